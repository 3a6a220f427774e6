"""The backtester: strategies against the recorded market of a period's VI events, in local time,
on the one exchange loop (``backtest.runner``) with one account.

Its own events, merged in time with the loop's: each decision, fired when its data has reached us
(the decision second's last row received, never before its local time); a once-a-second market
view of each event a strategy is exposed in (what was received by then); the account's equity
every second while anything is held or working (positions at the bid shown, net of exit costs);
each event's window end. What the loop reports (fills when they are heard of) goes to the strategy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rich.progress import Progress

from backtest.account import Account, trade_table
from backtest.execution import BUY, CancelRequest, ExecutionConfig, Fill, Venue
from backtest.runner import ExchangeLoop, Report
from backtest.strategy import Action, Decision, EventInfo, MarketSecond, Strategy
from backtest.tape import PHASE_AUCTION, Tape
from market.krx.clock import US_PER_SECOND, seoul_date, series_us

_DECISION, _SECOND, _EQUITY, _END = range(4)
TapeSource = Callable[[str, dt.date], Tape]  # (stock code, day) -> the stock-day's tape


@dataclass(frozen=True)
class BacktestConfig:
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    capital: float = 100_000_000.0  # KRW
    window_s: int = 330  # after the release, how long an event stays open before on_end
    exit_grace_s: int = 300  # after the window, how long its exits may still take (a VI, a limit lock)


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
    equity: list[tuple[int, float, float]]  # (ts, cash, equity): every second while exposed, at fills
    events: list[EventInfo]
    rows_replayed: int
    account: Account
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # stock -> (bid, µs) at the end

    def trades_frame(self) -> pd.DataFrame:
        """One row per fill (the columns of ``trades.parquet``)."""
        rows = [
            {
                "strategy": self.strategy, "event_id": f.event_id, "stock_code": f.stock_code,
                "order_ts": f.order_ts, "fill_ts": f.fill_ts, "side": "buy" if f.side == BUY else "sell",
                "qty": f.qty, "price": f.price, "brokerage": f.brokerage, "tax": f.tax, "reason": f.reason,
                "liquidity": f.liquidity, "client_id": f.client_id, "ack_ts": f.ack_ts,
            }
            for f in self.fills
        ]  # fmt: skip
        df = pd.DataFrame(rows, columns=TRADE_COLUMNS)
        for c in ("order_ts", "fill_ts", "ack_ts"):
            df[c] = pd.to_datetime(df[c].astype("int64"), unit="us", utc=True).dt.tz_convert("Asia/Seoul")
        return df

    def lots_frame(self) -> pd.DataFrame:
        """One row per position lot (per buy order), open lots marked at the bid net of exit costs."""
        return trade_table(
            self.fills, self.marks, self.strategy, self.account.markets, self.config.execution.brokerage_rate
        )

    def equity_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.equity, columns=["ts", "cash", "equity"])
        df["ts"] = pd.to_datetime(df["ts"].astype("int64"), unit="us", utc=True).dt.tz_convert("Asia/Seoul")
        df.insert(0, "strategy", self.strategy)
        return df


TRADE_COLUMNS = [
    "strategy", "event_id", "stock_code", "order_ts", "fill_ts", "side", "qty", "price", "brokerage",
    "tax", "reason", "liquidity", "client_id", "ack_ts",
]  # fmt: skip


def decision_ready(tape: Tape, decision_ts: int) -> int:
    """When a decision for the second ending at ``decision_ts`` can be made: not before then, nor
    before the last row of that second (exchange time) has been received."""
    i = tape.index_at(decision_ts - 1)
    return max(decision_ts, int(tape.local_ts[i])) if i >= 0 else decision_ts


class _Run:
    """One strategy's pass over the events (the state a :class:`Backtester` run holds)."""

    def __init__(self, bt: Backtester, strategy: Strategy, progress: Callable[[], None]) -> None:
        self.bt, self.strategy, self.cfg = bt, strategy, bt.config
        self.loop = ExchangeLoop(self.venue, bt.config.execution, bt.config.capital)
        self._venues: dict[tuple[str, dt.date], Venue] = {}
        self.queue: list = []
        self.seq = itertools.count()
        self.fills: list[Fill] = []
        self.rejections: list[Rejection] = []
        self.equity: list[tuple[int, float, float]] = []
        self.ticking: set[str] = set()
        self.sampling = False
        self.infos: dict[str, EventInfo] = {}
        self.until: dict[str, int] = {}  # per event: when its market views stop
        self.day_end: dict[dt.date, int] = {}  # per day: the last event's last view (equity sampled till)
        self.days: set[tuple[str, dt.date]] = set()  # the stock-days the events bring
        self.last_marks: dict[str, int] = {}
        self._last_state: tuple | None = None
        self._mark_seconds: dict[tuple[str, dt.date], tuple[int, np.ndarray]] = {}
        self.progress = progress

    def venue(self, code: str, day: dt.date) -> Venue:
        key = (code, day)
        if key not in self._venues:
            self._venues[key] = Venue(self.bt.tape(code, day), self.cfg.execution)
        return self._venues[key]

    def tape(self, ev: EventInfo) -> Tape:
        return self.venue(ev.stock_code, ev.day).tape

    # Context --------------------------------------------------------------------------------
    @property
    def cash(self) -> float:
        return self.loop.account.cash

    def position(self, stock_code: str) -> int:
        return self.loop.position(stock_code)

    def working(self, event_id: str) -> list[int]:
        return self.loop.working(event_id)

    # our events -----------------------------------------------------------------------------
    def push(self, ts: int, kind: int, payload: object) -> None:
        heapq.heappush(self.queue, (ts, kind, next(self.seq), payload))

    def act(self, now: int, event: EventInfo, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, CancelRequest):
                self.loop.cancel(a.client_id, now)
                continue
            placed = self.loop.submit(a, now)
            if isinstance(placed, str):
                self.rejections.append(Rejection(now, a.event_id, a.stock_code, placed))
        if self.loop.working(event.event_id):
            self.start_seconds(now, event)

    def start_seconds(self, now: int, event: EventInfo) -> None:
        """Market views on whole seconds of the clock (the decisions' grid), from the next one on;
        the account's equity sampled on the same grid."""
        nxt = (now // US_PER_SECOND + 1) * US_PER_SECOND
        if event.event_id not in self.ticking:
            self.ticking.add(event.event_id)
            self.push(nxt, _SECOND, event)
        if not self.sampling:
            self.sampling = True
            self.push(nxt, _EQUITY, None)

    def exposed(self, event: EventInfo) -> bool:
        return self.position(event.stock_code) > 0 or bool(self.loop.working(event.event_id))

    def second(self, now: int, event: EventInfo) -> None:
        if not self.exposed(event) or now > self.until[event.event_id]:
            self.ticking.discard(event.event_id)
            return
        tape = self.tape(event)
        i = tape.seen_at(now)
        if i < 0:  # nothing of the stock received yet
            self.push(now + US_PER_SECOND, _SECOND, event)
            return
        bid, ask = tape.quotes(i)
        m = MarketSecond(
            event, now, int(tape.last_price[i]), bid, ask, int(tape.program_net_buy[i]),
            int(tape.cum_volume[i]), bool(tape.phase[i] == PHASE_AUCTION),
        )  # fmt: skip
        self.act(now, event, self.strategy.on_second(m, self))
        self.push(now + US_PER_SECOND, _SECOND, event)

    def marks(self, now: int, day: dt.date | None = None) -> dict[str, int]:
        """What each held stock is worth a share: the mark of what was received by ``now`` (a stock
        with no tape that day keeps its last mark)."""
        day = day or seoul_date(now)
        for code, q in self.loop.account.positions.items():
            if q and (code, day) in self.days:
                mark = self._mark_at(code, day, now)
                if mark >= 0:
                    self.last_marks[code] = mark
        return {c: self.last_marks.get(c, 0) for c, q in self.loop.account.positions.items() if q}

    def _mark_at(self, code: str, day: dt.date, now: int) -> int:
        """The stock's mark received by ``now`` (-1: nothing yet); on whole seconds read off a table
        of the day's seconds built once (a position held for hours is marked every second)."""
        tape = self.venue(code, day).tape
        if now % US_PER_SECOND:
            i = tape.seen_at(now)
            return int(tape.mark[i]) if i >= 0 else -1
        table = self._mark_seconds.get((code, day))
        if table is None:
            first = int(tape.local_ts[0]) // US_PER_SECOND
            seconds = np.arange(first, int(tape.local_ts[-1]) // US_PER_SECOND + 2) * US_PER_SECOND
            seen = np.searchsorted(tape.local_ts, seconds, side="right") - 1
            table = self._mark_seconds[(code, day)] = (first, np.where(seen >= 0, tape.mark[seen], -1))
        first, by_second = table
        k = now // US_PER_SECOND - first
        return int(by_second[min(k, len(by_second) - 1)]) if k >= 0 else -1

    def sample(self, now: int, day: dt.date | None = None) -> None:
        """The account's equity at ``now`` (a sample that would repeat the last one is left out:
        a held position whose bid does not move adds nothing to the curve or its drawdown)."""
        account = self.loop.account
        day = day or seoul_date(now)
        state = (account.cash, tuple(sorted(self.marks(now, day).items())), day)
        if state == self._last_state:
            return
        self._last_state = state
        self.equity.append((now, account.cash, account.equity(dict(state[1]), state[2])))

    def sample_second(self, now: int) -> None:
        day = seoul_date(now)
        self.sample(now, day)
        held = any(q for q in self.loop.account.positions.values())
        if (held or self.loop.open) and now <= self.day_end.get(day, 0):
            self.push(now + US_PER_SECOND, _EQUITY, None)
        else:
            self.sampling = False

    def hear(self, report: Report) -> None:
        if report.kind != "fill":
            return
        fill = report.fill
        self.fills.append(fill)
        self.sample(report.ts)
        ev = self.infos[fill.event_id]
        self.act(report.ts, ev, self.strategy.on_fill(fill, self))
        if self.exposed(ev):
            self.start_seconds(report.ts, ev)

    # the loop -------------------------------------------------------------------------------
    def run(self, events: list[EventInfo], decisions: dict[str, list[Decision]]) -> int:
        rows = 0
        window, grace = self.cfg.window_s * US_PER_SECOND, self.cfg.exit_grace_s * US_PER_SECOND
        for ev in events:
            tape = self.tape(ev)
            self.infos[ev.event_id] = ev
            self.days.add((ev.stock_code, ev.day))
            end = ev.release_ts + window
            self.until[ev.event_id] = tape.auction_end(end + grace)
            self.day_end[ev.day] = max(self.day_end.get(ev.day, 0), self.until[ev.event_id])
            rows += tape.index_at(end) - tape.index_at(ev.release_ts)
            for d in decisions.get(ev.event_id, []):
                self.push(decision_ready(tape, d.ts), _DECISION, d)
            self.push(end, _END, ev)
        while self.queue or self.loop.next_time() is not None:
            t_loop = self.loop.next_time()
            if t_loop is not None and (not self.queue or t_loop <= self.queue[0][0]):
                for report in self.loop.advance(t_loop):
                    self.hear(report)
                continue
            now, kind, _, payload = heapq.heappop(self.queue)
            if kind == _DECISION:
                d: Decision = payload
                d = dataclasses.replace(d, last_price=self.tape(d.event).last_trade_at(now))
                self.act(now, d.event, self.strategy.on_decision(d, self))
            elif kind == _SECOND:
                self.second(now, payload)
            elif kind == _EQUITY:
                self.sample_second(now)
            else:
                ev = payload
                self.act(now, ev, self.strategy.on_end(ev, self))
                self.sample(now)
                self.progress()
        return rows

    def end_marks(self) -> dict[str, tuple[int, int]]:
        """The bid each still-held stock showed last (at its last market view), for the lots."""
        out = {}
        for code, q in self.loop.account.positions.items():
            if q:
                evs = [e for e in self.infos.values() if e.stock_code == code]
                at = max(self.until[e.event_id] for e in evs)
                out[code] = (self.marks(at)[code], at)
        return out


class Backtester:
    """Runs strategies over VI events; ``tapes(stock_code, day)`` gives a stock-day's tape."""

    def __init__(self, tapes: TapeSource, config: BacktestConfig | None = None) -> None:
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
            strategy.name, self.config, run.fills, run.rejections, run.equity, events, rows,
            run.loop.account, run.end_marks(),
        )  # fmt: skip


def as_decisions(
    frame: pd.DataFrame, infos: dict[str, EventInfo], features: list[str], outputs: list[str]
) -> dict[str, list[Decision]]:
    """Decision rows (event_id, decision_offset_s, event_timestamp, features, model outputs) as
    :class:`Decision` objects per event (the backtester sets each one's last trade when it fires)."""
    out: dict[str, list[Decision]] = {}
    ts_us = series_us(frame["event_timestamp"]).to_numpy()
    feats = frame[features].to_numpy(dtype=np.float64)
    outs = frame[outputs].to_numpy(dtype=np.float64) if outputs else np.empty((len(frame), 0))
    for j, (eid, k) in enumerate(zip(frame["event_id"], frame["decision_offset_s"], strict=True)):
        info = infos.get(eid)
        if info is None:
            continue
        out.setdefault(eid, []).append(
            Decision(
                info, int(k), int(ts_us[j]), 0, dict(zip(features, feats[j], strict=True)),
                dict(zip(outputs, outs[j], strict=True)),
            )
        )  # fmt: skip
    return out
