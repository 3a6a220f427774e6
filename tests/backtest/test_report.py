"""Reports that stay: every backtest run keeps its own page and the index lists them all; a live
day beside its backtest is matched order by order and every difference is named with its cause."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from backtest.account import Account
from backtest.engine import BacktestConfig, RunResult
from backtest.execution import BUY, SELL, Fill
from backtest.metrics import compare_runs
from backtest.report import fill_differences, write_report
from backtest.strategy import EventInfo
from market import krx

DAY = dt.date(2024, 3, 11)
T = krx.at_seoul(DAY, dt.time(14, 39, 55))
EVENT = EventInfo("448820-1", "448820", "KOSPI", DAY, T - 130_000_000, T - 1_000_000, 1, "static", 34_000)


def _run(name: str, fills: list[Fill]) -> RunResult:
    account = Account(100_000_000.0)
    for f in fills:
        account.apply(f)
    equity = [(f.fill_ts, account.cash, account.cash) for f in fills]
    return RunResult(name, BacktestConfig(), fills, [], equity, [EVENT], 0, account)


def _fill(cid: int, side: int, price: int, sent_ms: int, filled_ms: int, qty: int = 145) -> Fill:
    sent, filled = T + sent_ms * 1000, T + filled_ms * 1000
    tax = int(qty * price * 0.0018) if side == SELL else 0
    return Fill(cid, EVENT.event_id, "448820", side, qty, price, sent, filled, filled, 0, tax, "r", "taker")


def test_a_live_day_is_matched_order_by_order_with_each_difference_named():
    live = _run("live (journal)", [_fill(1, BUY, 34_350, 128, 999), _fill(2, SELL, 35_150, 61_000, 61_030)])
    backtest = _run("model", [_fill(7, BUY, 34_450, 2, 32), _fill(8, SELL, 35_150, 61_000, 61_030)])
    diff = fill_differences(live, backtest).set_index("side")
    assert diff.loc["sell", "cause"] == "the same" and diff.loc["sell", "KRW"] == 0
    buy = diff.loc["buy"]
    assert buy["KRW"] == 145 * 100  # live paid 100 KRW a share less
    assert "sent 126 ms later live" in buy["cause"]
    assert "filled 871 ms after it was sent live, 30 ms in the backtest" in buy["cause"]
    only = fill_differences(live, _run("model", []))
    assert set(only["cause"]) == {"only the live session placed it"}


def test_every_run_keeps_its_page_and_the_index_lists_them_all(tmp_path):
    groups = pd.DataFrame({"event_id": [EVENT.event_id], "cause": ["news"], "vi_type": ["static"],
                           "direction": ["up"]})  # fmt: skip
    out = tmp_path / "backtest"
    pages = []
    for name in ("demo", "live-2024-03-11"):
        run = _run("model", [_fill(1, BUY, 34_450, 2, 32), _fill(2, SELL, 35_150, 61_000, 61_030)])
        runs = {("model", "configured"): run, ("model", "zero"): run}
        result = compare_runs(runs, groups, [DAY], 100_000_000.0)
        result["meta"] = {
            "run": name, "written": f"2026-12-07T10:0{len(pages)}:00", "days": [DAY.isoformat()], "events": 1,
            "execution": "30 ms in, 30 ms back", "feed_latency_ms": 20.0, "queue_model": "risk_averse",
            "model": None, "policy": None, "threshold": None, "replay_events_per_s": 1.0,
        }  # fmt: skip
        pages.append(write_report(result, runs, out, name))
    assert [p.parent.name for p in pages] == ["demo", "live-2024-03-11"]
    assert all(p.exists() and "Comparison on the same events" in p.read_text() for p in pages)
    index = (out / "index.html").read_text()
    assert 'href="demo/index.html"' in index and 'href="live-2024-03-11/index.html"' in index
    assert index.index("live-2024-03-11") < index.index('href="demo')  # newest first
