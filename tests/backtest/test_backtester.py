"""The backtester on the session's synthetic market and on crafted tapes: accounts reconcile with the
trades, every fill is on the grid and inside the daily limits, latency moves fills, and the rules
of a retail account (no short selling, cash) hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.data import TapeCache, load_events
from backtest.engine import BacktestConfig, Backtester, as_decisions
from backtest.execution import SELL, ExecutionConfig, OrderRequest
from backtest.metrics import round_trips, summarize
from backtest.strategies import BuyAndHold, ExitRules, VITrader
from backtest.strategy import Decision, EventInfo, Strategy
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
def session_run(built, dataset):
    events, _ = load_events(built.events, dataset / "instruments.parquet")
    tapes = TapeCache(dataset, dataset / "instruments.parquet")
    labels = pd.read_parquet(built.labels / "labels.parquet")
    decisions = as_decisions(labels, {e.event_id: e for e in events}, [], [], tapes)
    bt = Backtester(tapes, BacktestConfig(ExecutionConfig(), capital=50_000_000))
    return {s.name: bt.run(s, events, decisions) for s in (BuyAndHold(), EveryDecision())}, tapes, decisions


def test_cash_and_positions_reconcile_with_the_trades(session_run):
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
        trips = round_trips(trades)
        closed = trades[trades["event_id"].isin(trips["event_id"])]
        flows = (
            np.where(closed["side"] == "buy", -1, 1) * closed["qty"] * closed["price"]
            - closed["brokerage"]
            - closed["tax"]
        )
        assert trips["pnl"].sum() == pytest.approx(flows.sum())


def test_event_windows_trade_exactly_as_whole_stock_days(session_run, built, dataset):
    from backtest.data import event_tapes

    runs, _, decisions = session_run
    events = runs["every-decision"].events
    windows = event_tapes(dataset, dataset / "instruments.parquet", events, 330 + 300)
    bt = Backtester(lambda e: windows[e.event_id], BacktestConfig(ExecutionConfig(), capital=50_000_000))
    windowed = bt.run(EveryDecision(), events, decisions)
    whole = runs["every-decision"]
    assert len(windowed.fills) == len(whole.fills) > 0
    assert [(f.event_id, f.side, f.qty, f.price, f.fill_ts) for f in windowed.fills] == [
        (f.event_id, f.side, f.qty, f.price, f.fill_ts) for f in whole.fills
    ]
    assert max(len(w) for w in windows.values()) < min(
        len(t) for t in {e.stock_code: session_run[1](e) for e in events}.values()
    )


def test_every_fill_is_on_the_grid_and_inside_the_daily_limits(session_run):
    runs, tapes, _ = session_run
    for run in runs.values():
        for f in run.fills:
            ev = next(e for e in run.events if e.event_id == f.event_id)
            tape = tapes(ev)
            assert tape.lower_limit <= f.price <= tape.upper_limit
            assert krx.is_on_grid(f.price, ev.market, ev.day), (f, ev.market)
            # a sale pays the sell tax of its settlement year, a purchase none
            assert (f.tax > 0) == (f.side == SELL)


def test_exits_fire_by_their_rules_and_the_buy_and_hold_holds_its_time(session_run):
    runs, _, _ = session_run
    trips = round_trips(runs["buy-and-hold"].trades_frame())
    assert len(trips) and set(trips["exit_reason"]) <= {"time exit", "window end"}
    held = (trips["exit_ts"] - trips["entry_ts"]) / 1e6
    assert (held >= 60).all() and (held < 62).mean() > 0.9  # exit at the first second after 60 s
    reasons = set(round_trips(runs["every-decision"].trades_frame())["exit_reason"])
    assert "time exit" in reasons and reasons & {"stop loss", "take profit"}


def test_decisions_see_only_the_past(session_run):
    _, tapes, decisions = session_run
    for ds in list(decisions.values())[:20]:
        for d in ds:
            tape = tapes(d.event)
            before = tape.ts <= d.ts
            traded = (tape.kind == 0) & before
            assert d.last_price == tape.price[np.flatnonzero(traded)[-1]]
            assert d.ts >= d.event.release_ts


def test_metrics_of_a_run_are_consistent(session_run):
    runs, _, _ = session_run
    run = runs["every-decision"]
    trades = run.trades_frame()
    trips = round_trips(trades)
    days = sorted({e.day for e in run.events})
    m = summarize(trips, trades, run.equity_frame(), days, 50_000_000, bootstrap=200)
    assert m["trades"] == len(trips) > 0
    win, lo, hi = m["win_rate"]
    assert lo <= win <= hi and win == pytest.approx((trips["pnl"] > 0).mean())
    assert m["net_pnl"] == pytest.approx(trips["pnl"].sum())
    assert 0 <= m["max_drawdown"] < 1 and 0 < m["exposure"] < 1


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
    run = Backtester(lambda e: tape, BacktestConfig(config, capital=capital)).run(
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
