"""The backtester on the session's synthetic market and on crafted tapes: accounts reconcile with the
trades, every fill is on the grid and inside the daily limits, latency moves fills, and the rules
of a retail account (no short selling, cash) hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.account import exit_value
from backtest.data import load_events
from backtest.engine import BacktestConfig, Backtester, as_decisions
from backtest.execution import SELL, ExecutionConfig, OrderRequest
from backtest.metrics import summarize
from backtest.strategies import BuyAndHold, ExitRules, VITrader
from backtest.strategy import Decision, EventInfo, Strategy
from backtest.tapestore import TapeStore
from market import krx
from tests.backtest.conftest import DAY, T0, make_tape, row


class EveryDecision(VITrader):
    """Buys at every event's third decision second, holds 20 s, stops at 0.5%: many overlapping
    round trips, exits of every kind."""

    name = "every-decision"

    def __init__(self) -> None:
        super().__init__(ExitRules(hold_s=20, stop_loss=0.005, take_profit=0.01), notional=30_000_000)

    def wants(self, d: Decision) -> str:
        return "test" if d.offset_s == 2 else ""


@pytest.fixture(scope="module")
def session_run(built, dataset, tmp_path_factory):
    events, _ = load_events(built.events, dataset / "instruments.parquet")
    tapes = TapeStore(dataset, cache_dir=tmp_path_factory.mktemp("tapes"))
    labels = pd.read_parquet(built.labels / "labels.parquet")
    decisions = as_decisions(labels, {e.event_id: e for e in events}, [], [])
    bt = Backtester(tapes, BacktestConfig(ExecutionConfig(), capital=50_000_000))
    return {s.name: bt.run(s, events, decisions) for s in (BuyAndHold(), EveryDecision())}, tapes, decisions


def test_cash_positions_and_lots_reconcile_with_the_fills(session_run):
    runs, _, _ = session_run
    for run in runs.values():
        assert run.fills, run.strategy
        assert run.account.cash == pytest.approx(50_000_000 + sum(f.cash_flow for f in run.fills), abs=1e-6)
        held: dict[str, int] = {}
        for f in run.fills:
            held[f.stock_code] = held.get(f.stock_code, 0) + f.side * f.qty
            assert held[f.stock_code] >= 0  # never short, at any point
        assert {k: v for k, v in held.items() if v} == {k: v for k, v in run.account.positions.items() if v}
        trades = run.trades_frame()
        columns = ["strategy", "event_id", "stock_code", "order_ts", "fill_ts", "side", "qty", "price"]
        assert list(trades.columns[:11]) == [*columns, "brokerage", "tax", "reason"]
        assert (trades["fill_ts"] >= trades["order_ts"]).all()
        assert (trades["ack_ts"] >= trades["fill_ts"]).all()
        # the lots' P&L is the account's: cash moved, and what is still held at its bid net of exit costs
        lots = run.lots_frame()
        assert set(lots["client_id"]) == {f.client_id for f in run.fills if f.side == 1}
        still = sum(
            exit_value(q, run.marks[s][0], run.account.markets[s], krx.seoul_date(run.marks[s][1]), 0.00015)
            for s, q in run.account.positions.items()
            if q
        )
        assert lots["pnl"].sum() == pytest.approx(run.account.cash - 50_000_000 + still, abs=1e-3)


def test_tapes_from_the_cache_trade_exactly_as_tapes_read_from_parquet(session_run, dataset):
    from backtest.tape import load_tape

    runs, store, decisions = session_run
    events = runs["every-decision"].events

    def from_parquet(code, day):
        return load_tape(dataset, code, store.stock_day(code, day))

    bt = Backtester(from_parquet, BacktestConfig(ExecutionConfig(), capital=50_000_000))
    fresh = bt.run(EveryDecision(), events, decisions)
    cached = runs["every-decision"]
    assert len(fresh.fills) == len(cached.fills) > 0
    assert [(f.event_id, f.side, f.qty, f.price, f.fill_ts) for f in fresh.fills] == [
        (f.event_id, f.side, f.qty, f.price, f.fill_ts) for f in cached.fills
    ]
    assert isinstance(store(events[0].stock_code, events[0].day).ts, np.ndarray)
    assert store.built == len({(e.stock_code, e.day) for e in events})  # each stock-day built once


def test_every_fill_is_on_the_grid_and_inside_the_daily_limits(session_run):
    runs, tapes, _ = session_run
    for run in runs.values():
        for f in run.fills:
            ev = next(e for e in run.events if e.event_id == f.event_id)
            tape = tapes(ev.stock_code, ev.day)
            assert tape.lower_limit <= f.price <= tape.upper_limit
            assert krx.is_on_grid(f.price, ev.market, ev.day), (f, ev.market)
            # a sale pays the sell tax of its settlement year, a purchase none
            assert (f.tax > 0) == (f.side == SELL)


def test_exits_fire_by_their_rules_and_the_buy_and_hold_holds_its_time(session_run):
    runs, _, _ = session_run
    lots = runs["buy-and-hold"].lots_frame()
    closed = lots[lots["status"] == "closed"]
    assert len(closed) and set(closed["exit_reason"]) <= {"time exit", "window end"}
    held = (closed["exit_ts"] - closed["entry_ts"]) / 1e6
    assert (held >= 60).all() and (held < 62).mean() > 0.9  # exit at the first second after 60 s
    reasons = set(runs["every-decision"].lots_frame()["exit_reason"])
    assert "time exit" in reasons and reasons & {"stop loss", "take profit"}


def test_decisions_see_only_what_was_received(session_run):
    from backtest.engine import decision_ready

    _, tapes, decisions = session_run
    for ds in list(decisions.values())[:20]:
        for d in ds:
            tape = tapes(d.event.stock_code, d.event.day)
            ready = decision_ready(tape, d.ts)
            assert ready >= d.ts >= d.event.release_ts
            # every row of the decision's second has reached us by then, and no later row is used
            before = tape.ts < d.ts
            assert (tape.local_ts[before] <= ready).all()
            seen = tape.local_ts <= ready
            traded = (tape.kind == 0) & seen
            assert tape.last_trade_at(ready) == tape.price[np.flatnonzero(traded)[-1]]


def test_metrics_of_a_run_are_consistent(session_run):
    runs, _, _ = session_run
    run = runs["every-decision"]
    lots = run.lots_frame()
    days = sorted({e.day for e in run.events})
    m = summarize(lots, run.trades_frame(), run.equity_frame(), days, 50_000_000, bootstrap=200)
    assert m["trades"] == len(lots) > 0
    win, lo, hi = m["win_rate"]
    assert lo <= win <= hi and win == pytest.approx((lots["pnl"] > 0).mean())
    assert m["net_pnl"] == pytest.approx(lots["pnl"].sum())
    assert 0 <= m["max_drawdown"] < 1 and 0 < m["exposure"] < 1
    assert m["sharpe"] is None and len(days) < 20  # too few days for a ratio


class _Scripted(Strategy):
    """Sends what it is told at the first decision."""

    name = "scripted"

    def __init__(self, requests: list[OrderRequest]) -> None:
        super().__init__()
        self.requests = requests
        self.fills = []

    def on_decision(self, d, ctx):
        return self.requests if d.offset_s == 0 else []

    def on_fill(self, fill, ctx):
        self.fills.append(fill)
        return []


def _crafted_run(config: ExecutionConfig, requests: list[OrderRequest], capital: float = 10_000_000):
    rows = [
        row(0, "trade", price=10_000, volume=10, side=1, bids=[(10_000, 100)], asks=[(10_010, 100)]),
        row(1_010, bids=[(10_000, 100)], asks=[(10_100, 100)]),  # 10 ms after the decision, the ask lifts
        row(5_000, "trade", price=10_100, volume=5, side=1, bids=[(10_090, 100)], asks=[(10_100, 95)]),
    ]
    tape = make_tape(rows)
    ev = EventInfo("005930-1", "005930", "KOSPI", DAY, T0 - 130_000_000, T0, 1, "dynamic", 10_000)
    decision = Decision(ev, 0, T0 + 1_000_000, 10_000, {}, {})
    strategy = _Scripted(requests)
    run = Backtester(lambda code, day: tape, BacktestConfig(config, capital=capital)).run(
        strategy, [ev], {ev.event_id: [decision]}
    )
    return run, strategy


def test_latency_changes_the_fill_on_a_crafted_book():
    buy = [OrderRequest("005930", 1, 10, event_id="005930-1")]
    zero, _ = _crafted_run(ExecutionConfig(0, 0), buy)
    slow, s1 = _crafted_run(ExecutionConfig(30_000, 20_000), buy)
    assert [(f.price, f.fill_ts - T0) for f in zero.fills] == [(10_010, 1_000_000)]
    assert [(f.price, f.fill_ts - T0) for f in slow.fills] == [(10_100, 1_030_000)]
    assert s1.fills[0].ack_ts == T0 + 1_050_000  # the strategy hears of it 20 ms after the fill


def test_a_retail_account_cannot_sell_short_or_spend_cash_it_lacks():
    sell = [OrderRequest("005930", SELL, 5, event_id="005930-1")]
    run, _ = _crafted_run(ExecutionConfig(0, 0), sell)
    assert run.fills == [] and "no short selling" in run.rejections[0].reason
    big = [OrderRequest("005930", 1, 2_000, event_id="005930-1")]
    run, _ = _crafted_run(ExecutionConfig(0, 0), big, capital=1_000_000)
    assert run.fills == [] and "not enough cash" in run.rejections[0].reason
    off_grid = [OrderRequest("005930", 1, 1, "limit", 10_005, event_id="005930-1")]
    run, _ = _crafted_run(ExecutionConfig(0, 0), off_grid)
    assert run.fills == [] and "tick grid" in run.rejections[0].reason


def test_exposure_counts_overlapping_positions_once():
    from backtest.metrics import time_in_market

    entries, exits = np.array([0, 5, 20, 21]), np.array([10, 8, 30, 25])
    assert time_in_market(entries, exits) == 10 + 10  # [0, 10] and [20, 30]
    assert time_in_market(np.array([]), np.array([])) == 0
