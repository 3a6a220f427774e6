"""The strategies: buy-and-hold after the release (the plain benchmark), two rule baselines and the
model strategy. All are long only (retail accounts cannot sell short): an up VI is traded for its
continuation (추세 지속), a down VI for its rebound (되돌림). Each holds one position per event,
sized to ``notional`` KRW, and leaves it by the first of its exit rules: the holding time, a fixed
stop (손절) or take-profit (익절), and program selling since the entry (손절 on 프로그램 매도).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backtest.execution import BUY, SELL, Fill, OrderRequest
from backtest.strategy import Action, Context, Decision, EventInfo, MarketSecond, Strategy

# what a model strategy reads from Decision.outputs (the model service answers the same)
EXIT_RETRY_S = 5  # a market sell that found no bids is sent again this much later
MODEL_OUTPUTS = ("continuation_60s", "rebound_60s", "expected_return_60s", "entry_second")


@dataclass(frozen=True)
class ExitRules:
    hold_s: float = 60.0
    stop_loss: float = 0.0  # e.g. 0.02: leave at 2% under the entry price (0: no stop)
    take_profit: float = 0.0
    program_sell_share: float = 0.0  # leave when programs sold this share of the volume since entry (0: off)

    def reason(self, h: _Holding, m: MarketSecond) -> str:
        """Why to leave now ("" to stay)."""
        if m.ts - h.entry_ts >= self.hold_s * 1e6:
            return "time exit"
        ret = m.last_price / h.entry_price - 1.0
        if self.stop_loss and ret <= -self.stop_loss:
            return "stop loss"
        if self.take_profit and ret >= self.take_profit:
            return "take profit"
        if self.program_sell_share:
            sold = h.program_at_entry - m.program_net_buy
            traded = m.cum_volume - h.volume_at_entry
            if sold > 0 and traded > 0 and sold >= self.program_sell_share * traded:
                return "program selling"
        return ""


@dataclass
class _Holding:
    entry_ts: int = 0
    entry_price: float = 0.0
    qty: int = 0
    program_at_entry: int = 0
    volume_at_entry: int = 0
    anchored: bool = False  # program and volume counts taken at the first second after entry
    exiting: bool = False
    exit_sent_ts: int = 0


@dataclass
class _EventState:
    entered: bool = False
    holding: _Holding = field(default_factory=_Holding)


class VITrader(Strategy):
    """One long position per event: :meth:`wants` says when to enter, :class:`ExitRules` when to leave.
    A sale of a stock closes its holdings oldest first (as the account's lots do), whichever
    event it was sent for."""

    def __init__(self, exits: ExitRules, notional: float = 5_000_000) -> None:
        super().__init__(notional)
        self.exits = exits
        self._events: dict[str, _EventState] = {}
        self._held: dict[str, list[str]] = {}  # stock -> events holding it, oldest entry first

    def wants(self, d: Decision) -> str:
        """The entry's reason if this decision should buy ("" otherwise)."""
        raise NotImplementedError

    def _state(self, event_id: str) -> _EventState:
        return self._events.setdefault(event_id, _EventState())

    def holdings(self, stock_code: str) -> list[_Holding]:
        """The holdings of ``stock_code``, oldest entry first."""
        return [self._state(e).holding for e in self._held.get(stock_code, [])]

    def on_decision(self, d: Decision, ctx: Context) -> list[Action]:
        st = self._state(d.event.event_id)
        if st.entered or ctx.position(d.event.stock_code) > 0 or d.last_price <= 0:
            return []
        reason = self.wants(d)
        if not reason:
            return []
        qty = int(min(self.notional, ctx.cash * 0.95) // d.last_price)
        if qty <= 0:
            return []
        st.entered = True
        return [OrderRequest(d.event.stock_code, BUY, qty, reason=reason, event_id=d.event.event_id)]

    def on_fill(self, fill: Fill, ctx: Context) -> list[Action]:
        if fill.side == BUY:
            h = self._state(fill.event_id).holding
            cost = h.entry_price * h.qty + fill.price * fill.qty
            h.qty += fill.qty
            h.entry_price = cost / h.qty
            h.entry_ts = h.entry_ts or fill.fill_ts
            held = self._held.setdefault(fill.stock_code, [])
            if fill.event_id not in held:
                held.append(fill.event_id)
            return []
        left, held = fill.qty, self._held.get(fill.stock_code, [])
        while left and held:
            h = self._state(held[0]).holding
            take = min(left, h.qty)
            h.qty -= take
            left -= take
            h.exiting = h.exiting and h.qty > 0
            if h.qty == 0:
                held.pop(0)
        return []

    def on_second(self, m: MarketSecond, ctx: Context) -> list[Action]:
        h = self._state(m.event.event_id).holding
        if h.exiting and not ctx.working(m.event.event_id) and m.ts - h.exit_sent_ts >= EXIT_RETRY_S * 1e6:
            h.exiting = False  # the exit was refused or found no buyers (a 하한가 lock): try again
        if h.qty <= 0 or h.exiting:
            return []
        if not h.anchored:
            h.program_at_entry, h.volume_at_entry, h.anchored = m.program_net_buy, m.cum_volume, True
        reason = self.exits.reason(h, m)
        return self._sell(m.event, h, reason, m.ts) if reason else []

    def on_end(self, event: EventInfo, ctx: Context) -> list[Action]:
        h = self._state(event.event_id).holding
        return [] if h.qty <= 0 or h.exiting else self._sell(event, h, "window end")

    def _sell(self, event: EventInfo, h: _Holding, reason: str, now: int = 0) -> list[Action]:
        h.exiting, h.exit_sent_ts = True, now
        return [OrderRequest(event.stock_code, SELL, h.qty, reason=reason, event_id=event.event_id)]


class BuyAndHold(VITrader):
    """Buy at the release, whatever the VI, and sell ``hold_s`` later."""

    name = "buy-and-hold"

    def __init__(self, hold_s: float = 60.0, notional: float = 5_000_000) -> None:
        super().__init__(ExitRules(hold_s=hold_s), notional)

    def wants(self, d: Decision) -> str:
        return "release" if d.offset_s == 0 else ""


RULE_EXITS = ExitRules(hold_s=300.0, stop_loss=0.02, take_profit=0.03, program_sell_share=0.2)


class MomentumRule(VITrader):
    """Up VIs whose auction settled beyond the trigger price and whose buyers led the run-up:
    buy at the release for the continuation. Holding the stock when a down VI keeps falling
    through its auction, sell out."""

    name = "rule-momentum"

    def __init__(self, exits: ExitRules = RULE_EXITS, notional: float = 5_000_000) -> None:
        super().__init__(exits, notional)

    def wants(self, d: Decision) -> str:
        f = d.features
        if (
            d.offset_s == 0
            and d.event.direction > 0
            and f["auc_price_dir"] > 0
            and f["pre_trade_strength_dir"] > 0
        ):
            return "momentum: auction beyond trigger, buyers led"
        return ""

    def on_decision(self, d: Decision, ctx: Context) -> list[Action]:
        staying = [h for h in self.holdings(d.event.stock_code) if not h.exiting]
        held = sum(h.qty for h in staying)
        if d.offset_s == 0 and d.event.direction < 0 and held > 0 and d.features["auc_price_dir"] > 0:
            for h in staying:  # the sale closes the oldest lots first: these
                h.exiting, h.exit_sent_ts = True, d.ts
            return [
                OrderRequest(
                    d.event.stock_code,
                    SELL,
                    held,
                    reason="down VI continuing: sell out",
                    event_id=d.event.event_id,
                )
            ]
        return super().on_decision(d, ctx)


class ReboundRule(VITrader):
    """Down VIs whose auction settled back above the trigger price (the selling spent itself):
    buy at the release for the rebound."""

    name = "rule-rebound"

    def __init__(self, exits: ExitRules = RULE_EXITS, notional: float = 5_000_000) -> None:
        super().__init__(exits, notional)

    def wants(self, d: Decision) -> str:
        if d.offset_s == 0 and d.event.direction < 0 and d.features["auc_price_dir"] < 0:
            return "rebound: auction settled above the trigger"
        return ""


class ModelStrategy(VITrader):
    """A registered model's outputs at each decision second: buy an up VI at the entry second the
    model predicts (at the release) when its continuation probability clears ``threshold``, and
    a down VI at the release when its rebound probability does. ``vicap backtest`` chooses the
    threshold on the model's validation days (``training.pipeline.validation_threshold``)."""

    name = "model"

    def __init__(
        self,
        threshold: float = 0.5,
        exits: ExitRules | None = None,
        notional: float = 5_000_000,
        label: str = "model",
    ) -> None:
        super().__init__(exits or ExitRules(hold_s=60.0, stop_loss=0.02, program_sell_share=0.2), notional)
        self.threshold = threshold
        self.name = label
        self._planned: dict[str, int] = {}

    def wants(self, d: Decision) -> str:
        out = d.outputs
        if d.event.direction < 0:
            ok = d.offset_s == 0 and out["rebound_60s"] >= self.threshold
            return f"model: rebound p={out['rebound_60s']:.2f}" if ok else ""
        planned = self._planned.setdefault(d.event.event_id, int(out["entry_second"]))
        if d.offset_s == planned and out["continuation_60s"] >= self.threshold:
            return f"model: continuation p={out['continuation_60s']:.2f} at +{planned}s"
        return ""


def make_strategy(name: str, **kwargs) -> Strategy:
    kinds = {c.name: c for c in (BuyAndHold, MomentumRule, ReboundRule, ModelStrategy)}
    if name not in kinds:
        raise ValueError(f"unknown strategy {name!r}: expected one of {sorted(kinds)}")
    return kinds[name](**kwargs)
