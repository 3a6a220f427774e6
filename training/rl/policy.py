"""A registered PPO policy as a backtest (and live) strategy: the observation of the environment
built from what the strategy hears (decisions, once-a-second views, its fills), the policy's
action turned into orders with the environment's rules (one lot, entries only in the entry
window, the position sold once held for the horizon from its fill)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backtest.execution import BUY, SELL, Fill, OrderRequest
from backtest.strategies import MODEL_OUTPUTS
from backtest.strategy import Action, Context, Decision, EventInfo, MarketSecond, Strategy
from market.krx.clock import US_PER_SECOND
from training.dataset import Normalizer
from training.rl.interpreters import (
    BUY_ACTION,
    SELL_ACTION,
    ObservationInterpreter,
    decision_row,
    observed_outputs,
)
from training.rl.simulator import SimConfig


@dataclass
class _Event:
    start_ts: int = 0
    start_price: float = 0.0
    features: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)
    entered: bool = False
    qty: int = 0
    entry_price: float = 0.0
    entry_ts: int = 0  # the buy's fill: the holding clock starts there


class PolicyStrategy(Strategy):
    def __init__(
        self,
        policy: Callable[[np.ndarray], int],
        normalizer: Normalizer,
        sim: SimConfig,
        label: str = "ppo",
        observe_outputs: bool = False,
    ) -> None:
        super().__init__(sim.lot_notional)
        self.policy, self.normalizer, self.sim = policy, normalizer, sim
        self.interpreter = ObservationInterpreter(
            len(normalizer.names), len(MODEL_OUTPUTS) if observe_outputs else 0
        )
        self.name = label
        self._events: dict[str, _Event] = {}

    def _observe(self, e: _Event, k: int, mark: float) -> np.ndarray:
        row = decision_row(k, len(e.features))
        outputs = e.outputs[row] if self.interpreter.n_outputs else None
        return self.interpreter.observe(
            e.features[row], outputs, e.qty > 0, e.entry_price, e.start_price, mark, self.sim.time_through(k),
            k < self.sim.entry_window_s,
        )  # fmt: skip

    def on_decision(self, d: Decision, ctx: Context) -> list[Action]:
        e = self._events.setdefault(d.event.event_id, _Event(d.ts))
        raw = np.array([d.features.get(n, np.nan) for n in self.normalizer.names], dtype=np.float64)
        e.features.append(self.normalizer.transform(raw[None, :])[0])
        if self.interpreter.n_outputs:
            e.outputs.append(observed_outputs(np.array([d.outputs[n] for n in MODEL_OUTPUTS])))
        k = (d.ts - e.start_ts) // US_PER_SECOND
        if k == self.sim.start_s:  # where the environment's episode starts
            e.start_price = float(d.last_price)
        flat = not e.entered and ctx.position(d.event.stock_code) == 0 and not ctx.working(d.event.event_id)
        if not flat or not self.sim.start_s <= k < self.sim.entry_window_s or d.last_price <= 0:
            return []
        if self.policy(self._observe(e, k, d.last_price)) != BUY_ACTION:
            return []
        qty = int(self.sim.lot_notional // d.last_price)
        if qty <= 0 or qty * d.last_price > ctx.cash:
            return []
        e.entered = True
        return [OrderRequest(d.event.stock_code, BUY, qty, reason="policy: buy", event_id=d.event.event_id)]

    def on_fill(self, fill: Fill, ctx: Context) -> list[Action]:
        e = self._events[fill.event_id]
        if fill.side == BUY:
            e.qty += fill.qty
            e.entry_price = fill.price
            e.entry_ts = e.entry_ts or fill.fill_ts
        else:
            e.qty -= fill.qty
        return []

    def on_second(self, m: MarketSecond, ctx: Context) -> list[Action]:
        e = self._events.get(m.event.event_id)
        if e is None or e.qty <= 0 or ctx.working(m.event.event_id):
            return []
        if m.ts - e.entry_ts >= self.sim.horizon_s * US_PER_SECOND:
            return self._sell(m.event, e, "horizon")
        k = (m.ts - e.start_ts) // US_PER_SECOND
        if self.policy(self._observe(e, k, m.last_price)) == SELL_ACTION:
            return self._sell(m.event, e, "policy: sell")
        return []

    def on_end(self, event: EventInfo, ctx: Context) -> list[Action]:
        e = self._events.get(event.event_id)
        return (
            self._sell(event, e, "window end") if e and e.qty > 0 and not ctx.working(event.event_id) else []
        )

    def _sell(self, event: EventInfo, e: _Event, reason: str) -> list[Action]:
        return [OrderRequest(event.stock_code, SELL, e.qty, reason=reason, event_id=event.event_id)]
