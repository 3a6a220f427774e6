"""The backtester: strategies against the recorded market of a period's VI events, in one clock.

Everything is an event on one time-ordered queue: decisions at each decision second, a
once-a-second market view while a strategy is exposed, our orders reaching the exchange after the
entry latency, their fills (from :mod:`backtest.execution`), acknowledgements after the response
latency, cancels, and each event's window end. One account carries cash and positions across
events that overlap in time; a strategy sees exactly what it would have seen live.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rich.progress import Progress

from backtest.execution import (
    BUY,
    SELL,
    Account,
    CancelRequest,
    ExecutionConfig,
    Fill,
    Order,
    OrderRequest,
    OrderType,
    PendingFill,
    Venue,
    new_order,
)
from backtest.strategy import Action, Decision, EventInfo, MarketSecond, Strategy
from backtest.tape import PHASE_AUCTION, Tape
from market.krx.clock import US_PER_SECOND, series_us

# at one instant: the exchange first, then what we learn, then what we decide
_ARRIVE, _FILL, _CANCEL, _ACK, _DECISION, _SECOND, _END = range(7)


@dataclass(frozen=True)
class BacktestConfig:
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    capital: float = 100_000_000.0  # KRW
    window_s: int = 330  # after the release, how long an event stays open before on_end


@dataclass
class Rejection:
    ts: int
    event_id: str
    stock_code: str
    reason: str


@dataclass
class RunResult:
    strategy: str
    config: BacktestConfig
    fills: list[Fill]
    rejections: list[Rejection]
    equity: list[tuple[int, float, float]]  # (ts, cash, equity)
    events: list[EventInfo]
    rows_replayed: int
    account: Account

    def trades_frame(self) -> pd.DataFrame:
        """One row per fill (the columns of ``trades.parquet``)."""
        rows = [
            {
                "strategy": self.strategy,
                "event_id": f.event_id,
                "stock_code": f.stock_code,
                "order_ts": f.order_ts,
                "fill_ts": f.fill_ts,
                "side": "buy" if f.side == BUY else "sell",
                "qty": f.qty,
                "price": f.price,
                "brokerage": f.brokerage,
                "tax": f.tax,
                "reason": f.reason,
                "liquidity": f.liquidity,
                "client_id": f.client_id,
            }
            for f in self.fills
        ]
        df = pd.DataFrame(rows, columns=TRADE_COLUMNS)
        for c in ("order_ts", "fill_ts"):
            df[c] = pd.to_datetime(df[c].astype("int64"), unit="us", utc=True).dt.tz_convert("Asia/Seoul")
        return df

    def equity_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.equity, columns=["ts", "cash", "equity"])
        df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="us", utc=True).dt.tz_convert("Asia/Seoul")
        df.insert(0, "strategy", self.strategy)
        return df


TRADE_COLUMNS = [
    "strategy",
    "event_id",
    "stock_code",
    "order_ts",
    "fill_ts",
    "side",
    "qty",
    "price",
    "brokerage",
    "tax",
    "reason",
    "liquidity",
    "client_id",
]


class _Run:
    """One strategy's pass over the events (the state a :class:`Backtester` run holds)."""

    def __init__(self, bt: Backtester, strategy: Strategy, progress: Callable[[], None]) -> None:
        self.bt, self.strategy, self.cfg = bt, strategy, bt.config.execution
        self.account = Account(bt.config.capital)
        self.queue: list = []
        self.seq = itertools.count()
        self.orders: dict[int, Order] = {}
        self.live: dict[str, set[int]] = {}  # per event, orders still live at the exchange
        self.sell_pending: dict[str, int] = {}
        self.reserved: dict[int, float] = {}
        self.settled: set[int] = set()
        self.fills: list[Fill] = []
        self.rejections: list[Rejection] = []
        self.equity: list[tuple[int, float, float]] = []
        self.marks: dict[str, int] = {}
        self.ticking: set[str] = set()
        self.venues: dict[str, Venue] = {}
        self.infos: dict[str, EventInfo] = {}
        self.progress = progress

    # Context --------------------------------------------------------------------------------
    @property
    def cash(self) -> float:
        return self.account.cash

    def position(self, stock_code: str) -> int:
        return self.account.positions.get(stock_code, 0)

    def working(self, event_id: str) -> list[int]:
        return sorted(self.live.get(event_id, ()))

    # queue ----------------------------------------------------------------------------------
    def push(self, ts: int, kind: int, payload: object) -> None:
        heapq.heappush(self.queue, (ts, kind, next(self.seq), payload))

    def act(self, now: int, event: EventInfo, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, CancelRequest):
                self.push(now + self.cfg.entry_latency_us, _CANCEL, a.client_id)
            else:
                self.submit(now, event, a)
        if self.live.get(event.event_id) and event.event_id not in self.ticking:
            self.start_seconds(now, event)

    def reject(self, now: int, r: OrderRequest, reason: str) -> None:
        self.rejections.append(Rejection(now, r.event_id, r.stock_code, reason))

    def submit(self, now: int, event: EventInfo, r: OrderRequest) -> None:
        venue = self.venues[event.event_id]
        reason = venue.check(r)
        if (
            not reason
            and r.side == SELL
            and r.qty > self.position(r.stock_code) - self.sell_pending.get(r.stock_code, 0)
        ):
            reason = (
                f"no short selling: selling {r.qty} of {r.stock_code}, holding {self.position(r.stock_code)}"
            )
        cost = 0.0
        if not reason and r.side == BUY:
            t = venue.tape
            i = t.index_at(now)
            price = r.limit_price if r.order_type == OrderType.LIMIT else (t.ask_px[i, 0] or t.last_price[i])
            cost = r.qty * float(price or t.upper_limit) * (1 + self.cfg.brokerage_rate)
            if cost > self.account.cash - sum(self.reserved.values()):
                reason = f"not enough cash for {r.qty} x {price:,} of {r.stock_code}"
        if reason:
            self.reject(now, r, reason)
            return
        order = new_order(r, now, self.cfg)
        self.orders[order.client_id] = order
        self.live.setdefault(event.event_id, set()).add(order.client_id)
        if r.side == SELL:
            self.sell_pending[r.stock_code] = self.sell_pending.get(r.stock_code, 0) + r.qty
        else:
            self.reserved[order.client_id] = cost
        self.push(order.arrival_ts, _ARRIVE, order)

    def settle(self, order: Order) -> None:
        """Release what a finished order held back (once)."""
        if order.live or order.client_id in self.settled:
            return
        self.settled.add(order.client_id)
        self.live[order.request.event_id].discard(order.client_id)
        self.reserved.pop(order.client_id, None)
        if order.request.side == SELL:
            self.sell_pending[order.request.stock_code] -= order.remaining

    def record(self, fill: Fill) -> None:
        self.account.apply(fill)
        if fill.side == SELL:
            self.sell_pending[fill.stock_code] -= fill.qty
        self.fills.append(fill)
        self.marks[fill.stock_code] = fill.price
        self.equity.append((fill.fill_ts, self.account.cash, self.mark_to_market()))
        self.push(fill.ack_ts, _ACK, fill)

    def mark_to_market(self) -> float:
        return self.account.cash + sum(q * self.marks.get(s, 0) for s, q in self.account.positions.items())

    def follow(self, order: Order) -> None:
        venue = self.venues[order.request.event_id]
        pending = venue.next_fill(order, int(venue.tape.ts[-1]))
        if pending is not None:
            self.push(pending.ts, _FILL, pending)

    # seconds --------------------------------------------------------------------------------
    def start_seconds(self, now: int, event: EventInfo) -> None:
        """Market views on whole seconds of the clock (the decisions' grid), from the next one on."""
        self.ticking.add(event.event_id)
        self.push((now // US_PER_SECOND + 1) * US_PER_SECOND, _SECOND, event)

    def exposed(self, event: EventInfo) -> bool:
        return self.position(event.stock_code) > 0 or bool(self.live.get(event.event_id))

    def second(self, now: int, event: EventInfo) -> None:
        tape = self.venues[event.event_id].tape
        if not self.exposed(event) or now > tape.ts[-1]:
            self.ticking.discard(event.event_id)
            return
        i = tape.index_at(now)
        m = MarketSecond(
            event,
            now,
            int(tape.last_price[i]),
            int(tape.bid_px[i, 0]),
            int(tape.ask_px[i, 0]),
            int(tape.program_net_buy[i]),
            int(tape.cum_volume[i]),
            bool(tape.phase[i] == PHASE_AUCTION),
        )
        self.marks[event.stock_code] = m.last_price or self.marks.get(event.stock_code, 0)
        self.act(now, event, self.strategy.on_second(m, self))
        self.push(now + US_PER_SECOND, _SECOND, event)

    # the loop -------------------------------------------------------------------------------
    def run(self, events: list[EventInfo], decisions: dict[str, list[Decision]]) -> int:
        rows = 0
        window = self.bt.config.window_s * US_PER_SECOND
        for ev in events:
            tape = self.bt.tape(ev)
            self.venues[ev.event_id] = Venue(tape, self.cfg)
            self.infos[ev.event_id] = ev
            rows += tape.index_at(ev.release_ts + window) - tape.index_at(ev.release_ts)
            for d in decisions.get(ev.event_id, []):
                self.push(d.ts, _DECISION, d)
            self.push(ev.release_ts + window, _END, ev)
        while self.queue:
            now, kind, _, payload = heapq.heappop(self.queue)
            if kind == _ARRIVE:
                order: Order = payload
                for f in self.venues[order.request.event_id].arrive(order):
                    self.record(f)
                if order.status == "rejected":
                    self.reject(now, order.request, order.reject_reason)
                self.settle(order)
                self.follow(order)
            elif kind == _FILL:
                pending: PendingFill = payload
                if pending.order.live:
                    self.record(self.venues[pending.order.request.event_id].take(pending))
                    self.settle(pending.order)
                    self.follow(pending.order)
            elif kind == _CANCEL:
                order = self.orders.get(payload)
                if order is not None and order.live:
                    order.status = "cancelled"
                    self.settle(order)
            elif kind == _ACK:
                fill: Fill = payload
                ev = self.infos[fill.event_id]
                self.act(now, ev, self.strategy.on_fill(fill, self))
            elif kind == _DECISION:
                d: Decision = payload
                self.act(now, d.event, self.strategy.on_decision(d, self))
            elif kind == _SECOND:
                self.second(now, payload)
            else:
                ev = payload
                self.act(now, ev, self.strategy.on_end(ev, self))
                self.equity.append((now, self.account.cash, self.mark_to_market()))
                self.progress()
        return rows


class Backtester:
    """Runs strategies over VI events; ``tapes`` gives an event's stock-day (cached per stock-day)."""

    def __init__(self, tapes: Callable[[EventInfo], Tape], config: BacktestConfig | None = None) -> None:
        self.config = config or BacktestConfig()
        self.tape = tapes

    def run(
        self,
        strategy: Strategy,
        events: list[EventInfo],
        decisions: dict[str, list[Decision]],
        show_progress: bool = False,
    ) -> RunResult:
        events = sorted(events, key=lambda e: (e.release_ts, e.event_id))
        with Progress(disable=not show_progress, transient=True) as bar:
            task = bar.add_task(f"{strategy.name}", total=len(events))
            run = _Run(self, strategy, lambda: bar.advance(task))
            rows = run.run(events, decisions)
        return RunResult(
            strategy.name, self.config, run.fills, run.rejections, run.equity, events, rows, run.account
        )


def as_decisions(
    frame: pd.DataFrame,
    infos: dict[str, EventInfo],
    features: list[str],
    outputs: list[str],
    tape: Callable[[EventInfo], Tape],
) -> dict[str, list[Decision]]:
    """Decision rows (event_id, decision_offset_s, event_timestamp, features, model outputs) as
    :class:`Decision` objects per event, each with the last trade price at its second."""
    out: dict[str, list[Decision]] = {}
    ts_us = series_us(frame["event_timestamp"]).to_numpy()
    feats = frame[features].to_numpy(dtype=np.float64)
    outs = frame[outputs].to_numpy(dtype=np.float64) if outputs else np.empty((len(frame), 0))
    for j, (eid, k) in enumerate(zip(frame["event_id"], frame["decision_offset_s"], strict=True)):
        info = infos.get(eid)
        if info is None:
            continue
        t = int(ts_us[j])
        out.setdefault(eid, []).append(
            Decision(
                info,
                int(k),
                t,
                tape(info).last_trade_at(t),
                dict(zip(features, feats[j], strict=True)),
                dict(zip(outputs, outs[j], strict=True)),
            )
        )
    return out
