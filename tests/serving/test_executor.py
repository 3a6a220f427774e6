"""The live executor on a replayed stock-day through the simulated broker: what it journals, that
the simulated broker on the growing tape fills as the execution model does on the recorded tape,
a restart that places nothing twice, risk refusals, the kill switch and a model service that is
down (no order, an alert)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

import pandas as pd
import pytest

from backtest.engine import TRADE_COLUMNS
from backtest.execution import BUY, ExecutionConfig, Order, Venue
from backtest.strategies import BuyAndHold, ModelStrategy
from backtest.tape import load_tape
from market.events.table import load_stock_days
from serving.alerts import AlertConfig, Alerts
from serving.brokers import SimBroker
from serving.executor import Batch, Executor
from serving.journal import Journal, journal_path
from serving.risk import RiskLimits, RiskManager
from serving.sources import ReplaySource
from tests.serving.conftest import Receiver
from vicap.live_cmd import LiveOptions, http_model, run_session
from vicap.settings import get_settings


@pytest.fixture
def root(tmp_path, vi_day):
    """A data root of the test's own whose raw data is ``vi_day``'s (journals and reports apart)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(vi_day.raw)
    return tmp_path / "data"


def _window(vi_day) -> tuple[dt.time, dt.time]:
    """Two minutes before the VI to six after its release: the entry, the 60 s exit, the window end."""
    return (vi_day.trigger - dt.timedelta(minutes=2)).time(), (
        vi_day.release + dt.timedelta(minutes=6)
    ).time()


def _options(vi_day, **kw) -> LiveOptions:
    start, end = _window(vi_day)
    base = {"day": vi_day.day, "codes": (vi_day.code,), "start": start, "end": end, "speed": 0.0}
    return LiveOptions(strategy="buy-and-hold", status_port=0, **(base | kw))


def _journal(root, day) -> sqlite3.Connection:
    return sqlite3.connect(journal_path(root / "journal", day))


def test_a_replayed_vi_is_bought_held_and_sold_through_the_simulated_broker_and_journaled(root, vi_day):
    settings = get_settings(data_dir=root)
    summary = asyncio.run(run_session(settings, _options(vi_day)))
    assert summary["vis"] >= 1 and summary["signals"] == 10 * summary["vis"]
    assert summary["order_states"] == {"filled": 2} and summary["fills"] >= 2
    assert summary["open_positions"] == {} and summary["refusals"] == 0
    db = _journal(root, vi_day.day)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    orders = pd.read_sql_query("SELECT * FROM orders ORDER BY client_id", db)
    assert orders["side"].tolist() == [1, -1] and orders["reason"].tolist() == ["release", "time exit"]
    # the day as Parquet in the backtest's trade columns; its cash flows are the journal's P&L
    trades = pd.read_parquet(root / "reports" / "live" / vi_day.day.isoformat() / "trades.parquet")
    assert list(trades.columns) == TRADE_COLUMNS and len(trades) == summary["fills"]
    sign = trades["side"].map({"buy": -1, "sell": 1})
    flows = sign * trades["qty"] * trades["price"] - trades["brokerage"] - trades["tax"]
    assert flows.sum() == pytest.approx(summary["net_pnl"])
    # the simulated broker on the tape as it grew fills the entry as the execution model does on
    # the recorded tape, for an order sent at the same instant
    buy = orders.iloc[0]
    stock_day = load_stock_days(vi_day.raw / "instruments.parquet")[(vi_day.code, vi_day.day)]
    venue = Venue(load_tape(vi_day.raw, vi_day.code, stock_day), ExecutionConfig())
    config = ExecutionConfig()
    recorded = Order(
        0, _request(buy), int(buy.sent_ts), int(buy.sent_ts) + config.entry_latency_us, int(buy.qty)
    )
    expected = [(f.qty, f.price) for f in venue.arrive(recorded)]
    live = pd.read_sql_query(f"SELECT qty, price FROM fills WHERE client_id = {int(buy.client_id)}", db)
    assert list(live.itertuples(index=False, name=None)) == expected


def _request(row):
    from backtest.execution import OrderRequest

    return OrderRequest(row.stock_code, int(row.side), int(row.qty), event_id=row.event_id)


def test_a_restart_after_the_entry_recovers_the_position_and_places_nothing_twice(root, vi_day):
    settings = get_settings(data_dir=root)
    stop = asyncio.Event()

    async def first_run() -> None:
        session = asyncio.ensure_future(run_session(settings, _options(vi_day), stop=stop))
        while not session.done():  # stop as soon as the buy is journaled as filled
            await asyncio.sleep(0.01)
            path = journal_path(root / "journal", vi_day.day)
            if (
                path.exists()
                and _journal(root, vi_day.day).execute("SELECT COUNT(*) FROM fills").fetchone()[0]
            ):
                stop.set()
        await session

    asyncio.run(first_run())
    db = _journal(root, vi_day.day)
    assert db.execute("SELECT side, state FROM orders").fetchall() == [(BUY, "filled")]
    summary = asyncio.run(run_session(settings, _options(vi_day)))
    orders = db.execute("SELECT side, state, reason FROM orders ORDER BY client_id").fetchall()
    assert orders == [(BUY, "filled", "release"), (-1, "filled", "time exit")]  # one buy, one exit
    assert summary["open_positions"] == {}


def test_every_order_the_risk_manager_refuses_is_journaled_with_its_reason(root, vi_day, tmp_path):
    limits = tmp_path / "risk.json"
    limits.write_text(RiskLimits(max_order_notional=1_000).model_dump_json())
    summary = asyncio.run(run_session(get_settings(data_dir=root), _options(vi_day, risk_file=limits)))
    assert summary["orders"] == 0 and summary["refusals"] >= 1
    reasons = [r[0] for r in _journal(root, vi_day.day).execute("SELECT reason FROM refusals")]
    assert all("per-order limit 1,000" in r for r in reasons)


def _executor(root, vi_day, strategy, alerts, model=None):
    start, end = _window(vi_day)
    source = ReplaySource(vi_day.raw, vi_day.day, [vi_day.code], 0.0, start, end)
    tapes: dict = {}
    journal = Journal(journal_path(root / "journal", vi_day.day))
    ex = Executor(
        stock_days=source.stock_days, tapes=tapes, strategy=strategy, risk=RiskManager(RiskLimits()),
        broker=SimBroker(tapes.get, ExecutionConfig(), 100_000_000.0), journal=journal, alerts=alerts,
        model=model, feed_clock=source.feed_clock, stamp_us=source.stamp_us,
    )  # fmt: skip
    return ex, source, journal


def test_the_kill_switch_stops_every_new_order_and_says_so(root, vi_day, receiver: Receiver):
    alerts = Alerts(AlertConfig(slack_webhook_url=f"{receiver.url}/hook"))
    ex, source, journal = _executor(root, vi_day, BuyAndHold(), alerts)
    ex.kill("test: stop trading")
    asyncio.run(ex.run(source))
    alerts.close()
    assert journal.summary()["orders"] == 0
    assert [r for (r,) in journal.db.execute("SELECT reason FROM kills")] == ["test: stop trading"]
    refusals = [r for (r,) in journal.db.execute("SELECT reason FROM refusals")]
    assert refusals and all(r.startswith("kill switch: test: stop trading") for r in refusals)
    assert any("kill switch" in t for t in receiver.texts())
    assert ex.snapshot()["risk"]["killed"] is True


def test_a_model_service_that_is_down_places_no_order_and_alerts(root, vi_day, receiver: Receiver):
    alerts = Alerts(AlertConfig(slack_webhook_url=f"{receiver.url}/hook"))
    down = http_model("http://127.0.0.1:9", None, timeout_s=0.2)  # the discard port: nothing listens
    ex, source, journal = _executor(root, vi_day, ModelStrategy(threshold=0.0), alerts, model=down)
    asyncio.run(ex.run(source))
    alerts.close()
    assert journal.summary()["orders"] == 0 and ex.stats.model_errors == ex.stats.decisions > 0
    decisions = [d for (d,) in journal.db.execute("SELECT decision FROM signals")]
    assert all(d.startswith("model service failed") and "ConnectError" in d for d in decisions)
    assert any(t.startswith("[vicap service_down]") for t in receiver.texts())


def test_the_status_page_serves_the_executors_own_state_and_pulls_its_kill_switch(root, vi_day):
    from pydantic import SecretStr
    from starlette.testclient import TestClient

    from serving.status import status_app

    ex, source, journal = _executor(root, vi_day, BuyAndHold(), Alerts(AlertConfig()))
    asyncio.run(ex.run(source))
    client = TestClient(status_app(ex, SecretStr("page-token")), base_url="http://127.0.0.1")
    snap = client.get("/api/status").json()
    assert [v["event_id"] for v in snap["vis"]] == [i.event_id for i in journal.vis()]
    assert [o["state"] for o in snap["orders"]] == ["filled", "filled"] and len(snap["fills"]) >= 2
    assert snap["positions"] == [] and snap["pnl"]["total"] == pytest.approx(journal.summary()["net_pnl"])
    assert snap["risk"]["killed"] is False and snap["feed"]["state"] == "done"
    assert len(snap["signals"]) == 10 * len(snap["vis"])
    headers = {"Authorization": "Bearer page-token"}
    assert client.post("/api/kill", json={"reason": "from the page"}, headers=headers).status_code == 200
    ex.on_batch(Batch([], ex.clock_us, 0))  # the loop acts on it at its next batch
    assert ex.snapshot()["risk"]["killed"] is True
    assert [r for (r,) in journal.db.execute("SELECT reason FROM kills")] == ["from the page"]
