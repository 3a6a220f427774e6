"""Money from the account: trades are position lots closed oldest first (FIFO) whatever VI a sale
was sent for, open lots count at the bid net of exit costs, daily P&L and drawdown come from the
equity, intervals resample whole days, and ratios need 20 days."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from backtest.account import Account, trade_table
from backtest.execution import BUY, SELL, Fill
from backtest.metrics import MIN_DAYS_FOR_RATIOS, _day_blocks, _mean, daily_pnl, summarize
from market import krx

DAY = dt.date(2024, 6, 3)
T = krx.at_seoul(DAY, dt.time(10))
RATE = 0.00015


def fill(cid: int, event: str, side: int, qty: int, price: int, at_s: float) -> Fill:
    brokerage = int(qty * price * RATE)
    tax = int(qty * price * 0.0018) if side == SELL else 0
    ts = T + int(at_s * 1e6)
    return Fill(cid, event, "005930", side, qty, price, ts, ts, ts, brokerage, tax, f"r{cid}", "taker")


def test_a_sale_closes_the_oldest_lots_first_whatever_vi_it_was_sent_for():
    fills = [
        fill(1, "A", BUY, 100, 10_000, 0),
        fill(2, "B", BUY, 50, 10_100, 10),
        fill(3, "C", SELL, 120, 10_200, 20),  # a sell-out under a third VI
    ]
    account = Account(10_000_000, brokerage_rate=RATE)
    for f in fills:
        account.apply(f)
    lots = trade_table(fills, {"005930": (10_150, T + 30 * 1_000_000)}, brokerage_rate=RATE)
    a, b = lots.iloc[0], lots.iloc[1]
    assert (a.event_id, a.status, a.exit_reason) == ("A", "closed", "r3")
    assert (b.event_id, b.status) == ("B", "open")  # 20 of its 50 sold, 30 still held
    sale_per_share = (120 * 10_200 - fills[2].brokerage - fills[2].tax) / 120
    assert a.pnl == pytest.approx(100 * sale_per_share - (1_000_000 + fills[0].brokerage))
    held_value = 30 * 10_150 - int(30 * 10_150 * RATE) - int(30 * 10_150 * 0.0018)
    cost_b = (50 * 10_100 + fills[1].brokerage) / 50
    assert b.pnl == pytest.approx(20 * sale_per_share + held_value - 50 * cost_b)
    # the lots add up to the account: cash moved and the holding at its bid net of exit costs
    equity = account.equity({"005930": 10_150}, DAY)
    assert lots["pnl"].sum() == pytest.approx(equity - 10_000_000)


def test_a_short_sale_is_refused_by_the_account():
    account = Account(1_000_000)
    with pytest.raises(AssertionError, match="short"):
        account.apply(fill(1, "A", SELL, 1, 10_000, 0))


def _equity(days: list[dt.date], closes: list[float]) -> pd.DataFrame:
    ts = [krx.at_seoul(d, dt.time(15)) for d in days]
    return pd.DataFrame({"ts": ts, "cash": closes, "equity": closes})


def test_daily_pnl_is_the_change_of_the_accounts_equity_day_to_day():
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    pnl = daily_pnl(_equity([days[0], days[2]], [1_010, 990]), days, 1_000)
    assert pnl.tolist() == [10.0, 0.0, -20.0]  # a day nothing was held moves nothing


def test_ratios_are_shown_only_from_twenty_days():
    trades = pd.DataFrame(
        {"pnl": [1.0], "net_return": [0.01], "entry_ts": [T], "exit_ts": [T + 1], "status": ["closed"],
         "costs": [0.0]}
    )  # fmt: skip
    fills = pd.DataFrame({"qty": [1], "price": [100]})
    few = [DAY + dt.timedelta(days=i) for i in range(MIN_DAYS_FOR_RATIOS - 1)]
    m = summarize(trades, fills, _equity(few[:1], [1_001.0]), few, 1_000, bootstrap=50)
    assert m["sharpe"] is None and m["sortino"] is None
    enough = [DAY + dt.timedelta(days=i) for i in range(MIN_DAYS_FOR_RATIOS)]
    closes = list(1_000 + np.cumsum(np.random.default_rng(0).normal(1, 2, len(enough))))
    m = summarize(trades, fills, _equity(enough, closes), enough, 1_000, bootstrap=50)
    assert np.isfinite(m["sharpe"][0]) and m["sharpe"][1] <= m["sharpe"][2]


def test_intervals_resample_whole_days_so_a_storm_day_widens_them():
    rng = np.random.default_rng(1)
    # one storm day of 60 trades that all went the same way, nine calm days of 4 mixed ones
    storm = rng.normal(0.01, 0.002, 60)
    calm = [rng.normal(-0.002, 0.004, 4) for _ in range(9)]
    values = np.concatenate([storm, *calm])
    day_of = np.concatenate([np.zeros(60, int), *[np.full(4, d + 1) for d in range(9)]])
    lo, hi = _day_blocks(values, day_of, _mean, np.random.default_rng(0), 500)
    draws = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(500)]
    iid_lo, iid_hi = np.quantile(draws, [0.025, 0.975])
    assert hi - lo > 2 * (iid_hi - iid_lo)  # trades of one day are not independent draws
