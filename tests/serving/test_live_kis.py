"""The live executor on the KIS feed and a KIS paper account, against the loopback fake KIS: a paper
session, and the faults real sessions bring: the feed dropping during a VI, drifted frames, rate
limits, token expiry, the broker refusing orders, and ``kill -9`` at several points of a session
(between sending an order and its acknowledgement among them), each restart reconciling with the
broker and placing nothing twice."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from market import krx
from market.kis.export import build_feed
from serving.fake_kis import FakeKis
from serving.journal import journal_path
from tests.serving.conftest import Receiver
from vicap.live_cmd import LiveOptions, run_session
from vicap.settings import get_settings

KEYS = {"app_key": "live-test-app-key", "app_secret": "live-test-app-secret", "account": "50000000-01"}
CHILD = Path(__file__).with_name("live_child.py")
CHILD_START_S = 25.0  # a generous bound on the child's start (imports, the KRX calendar, a token)


@pytest.fixture(scope="module")
def window(vi_day) -> tuple[dt.time, dt.time]:
    """From 20 s before the VI to three minutes after its release."""
    return (vi_day.trigger - dt.timedelta(seconds=20)).time(), (
        vi_day.release + dt.timedelta(minutes=3)
    ).time()


@pytest.fixture(scope="module")
def feed(vi_day, window):
    return build_feed(vi_day.raw, vi_day.day, [vi_day.code], *window)


@pytest.fixture
def root(tmp_path, vi_day, feed):
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw").rmdir()
    (data / "raw").symlink_to(vi_day.raw)
    (tmp_path / "stocks.csv").write_text("\n".join(feed.stock_rows) + "\n", encoding="utf-8")
    return data


def _settings(root: Path, fake: FakeKis, **kw):
    return get_settings(
        data_dir=root, kis_app_key=SecretStr(KEYS["app_key"]), kis_app_secret=SecretStr(KEYS["app_secret"]),
        kis_account=SecretStr(KEYS["account"]), kis_paper=True, kis_rest_url=fake.rest_url,
        kis_ws_url=fake.ws_url, kis_token_cache=root / "token", status_port=0, **kw,
    )  # fmt: skip


def _fake(vi_day, feed, speed: float, **kw) -> FakeKis:
    return FakeKis(vi_day.raw, feed, speed=speed, token_interval_s=0.0, **(KEYS | kw))


def _options(root: Path, window, vi_day) -> LiveOptions:
    stop = krx.at_seoul(vi_day.day, window[1])
    return LiveOptions(
        source="kis", broker="kis-paper", strategy="buy-and-hold", stocks_file=root.parent / "stocks.csv",
        stop_us=stop, status_port=0,
    )  # fmt: skip


def _orders(root: Path, day: dt.date) -> list[tuple]:
    db = sqlite3.connect(journal_path(root / "journal", day))
    return db.execute("SELECT side, state, reason FROM orders ORDER BY client_id").fetchall()


def test_a_paper_session_rides_out_drift_a_feed_drop_rate_limits_and_an_expired_token(
    root, vi_day, feed, window, receiver: Receiver
):
    """One session through the KIS paper account with every feed and REST fault a day brings: the
    records drift (fields appended), the feed drops ten seconds into the VI's auction, the token
    expires and two calls are rate-limited just before the release. It buys once and sells once,
    and the inquiry agrees."""
    with _fake(vi_day, feed, speed=20) as fake:
        fake.drift(3)  # KIS appends fields without notice: the records are read by their known prefix
        settings = _settings(root, fake, slack_webhook_url=SecretStr(f"{receiver.url}/hook"))

        async def session() -> dict:
            task = asyncio.ensure_future(
                run_session(settings, _options(root, window, vi_day), clock_us=fake.now_us)
            )
            while fake.now_us() < krx.epoch_us(vi_day.trigger) + 10_000_000:
                await asyncio.sleep(0.02)
            fake.drop()  # ten seconds into the VI's auction: close code 1006, a reconnect, a gap
            while fake.now_us() < krx.epoch_us(vi_day.release) - 5_000_000:
                await asyncio.sleep(0.02)
            fake.expire_tokens()  # the next call meets EGW00123 and renews the token
            fake.rate_limit(2)  # and two calls meet EGW00201
            return await task

        summary = asyncio.run(session())
        placed = fake.orders
    assert fake.stats["drops"] >= 1 and fake.stats["rate_limited"] >= 1
    assert any(t.startswith("[vicap feed_gap]") for t in receiver.texts())
    assert summary["vis"] >= 1 and summary["orders"] == placed == 2  # nothing twice
    assert _orders(root, vi_day.day) == [(1, "filled", "release"), (-1, "filled", "time exit")]
    assert summary["open_positions"] == {}


def test_an_order_kis_refuses_is_journaled_and_alerted_and_nothing_is_held(
    root, vi_day, feed, window, receiver: Receiver
):
    with _fake(vi_day, feed, speed=20, account="99999999-01") as fake:  # not the account we trade
        settings = _settings(root, fake, slack_webhook_url=SecretStr(f"{receiver.url}/hook"))
        stop = krx.epoch_us(vi_day.release) + 20_000_000
        options = dataclasses.replace(_options(root, window, vi_day), stop_us=stop)
        summary = asyncio.run(run_session(settings, options, clock_us=fake.now_us))
        assert fake.orders == 0
    assert summary["order_states"] == {"rejected": 1} and summary["open_positions"] == {}
    refusals = (
        sqlite3.connect(journal_path(root / "journal", vi_day.day))
        .execute("SELECT source, reason FROM refusals")
        .fetchall()
    )
    assert refusals and refusals[0][0] == "broker" and "OPSQ0002" in refusals[0][1]
    assert any(t.startswith("[vicap error]") and "OPSQ0002" in t for t in receiver.texts())


def _child(root: Path, fake: FakeKis, t0: float, speed: float, stop_us: int) -> subprocess.Popen:
    env = os.environ | {
        "VICAP_DATA_DIR": str(root), "VICAP_KIS_APP_KEY": KEYS["app_key"],
        "VICAP_KIS_APP_SECRET": KEYS["app_secret"], "VICAP_KIS_ACCOUNT": KEYS["account"],
        "VICAP_KIS_PAPER": "true", "VICAP_KIS_REST_URL": fake.rest_url, "VICAP_KIS_WS_URL": fake.ws_url,
        "VICAP_KIS_TOKEN_CACHE": str(root / "token"), "VICAP_STATUS_PORT": "0",
    }  # fmt: skip
    args = [str(fake.begin_us), repr(t0), str(speed), str(stop_us), str(root.parent / "stocks.csv")]
    log = (root.parent / "child.log").open("a")
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args], env=env, cwd=Path(__file__).parents[2], stdout=log, stderr=log
    )


def _wait(until, what: str, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rows(root: Path, day: dt.date, sql: str) -> list[tuple]:
    path = journal_path(root / "journal", day)
    if not path.exists():
        return []
    try:
        return sqlite3.connect(path).execute(sql).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []


def test_kill_9_at_any_point_of_a_session_loses_nothing_and_places_nothing_twice(root, vi_day, feed, window):
    speed = 4.0
    stop_us = krx.at_seoul(vi_day.day, window[1])
    day = vi_day.day
    orders = "SELECT client_id, side, state FROM orders ORDER BY client_id"
    with _fake(vi_day, feed, speed=speed) as fake:
        t0 = time.monotonic() + CHILD_START_S  # the replay starts once the child is up, at a time it knows
        fake.jump_to(fake.begin_us, t0)
        fake.delay_next_order_reply(60)  # the entry reaches KIS; its reply never comes in time
        child = _child(root, fake, t0, speed, stop_us)
        # 1. between sending the entry and its acknowledgement
        _wait(
            lambda: fake.orders == 1 and _rows(root, day, orders) == [(1, 1, "sending")],
            "the entry in flight",
        )
        child.send_signal(signal.SIGKILL)
        child.wait()
        child = _child(root, fake, t0, speed, stop_us)
        # 2. holding: the restart found the entry at KIS (acknowledged, filled) and sent nothing
        _wait(lambda: _rows(root, day, orders) == [(1, 1, "filled")], "the entry recovered")
        assert fake.orders == 1
        child.send_signal(signal.SIGKILL)
        child.wait()
        child = _child(root, fake, t0, speed, stop_us)
        # 3. after the exit: its fill journaled
        _wait(lambda: _rows(root, day, orders) == [(1, 1, "filled"), (2, -1, "filled")], "the exit filled")
        child.send_signal(signal.SIGKILL)
        child.wait()
        child = _child(root, fake, t0, speed, stop_us)  # runs to the end of the window
        assert child.wait(timeout=180) == 0, (root.parent / "child.log").read_text()[-3000:]
        placed = fake.orders
    assert placed == 2  # one entry and one exit at KIS: no order was placed twice
    assert _rows(root, day, orders) == [(1, 1, "filled"), (2, -1, "filled")]
    fills = _rows(root, day, "SELECT client_id, side, qty FROM fills ORDER BY id")
    assert [f[:2] for f in fills] == [(1, 1), (2, -1)] and fills[0][2] == fills[1][2]
    notes = _rows(root, day, "SELECT COUNT(*) FROM runs")[0][0]
    assert notes == 4  # four sessions wrote to one journal


def test_the_kill_switch_cancels_an_order_resting_at_kis(root, vi_day, feed):
    """What the kill switch asks of a KIS broker: an order resting at KIS (a buy at the lower
    daily limit) is cancelled through 주식주문(정정취소), and the inquiry then shows it over."""
    from backtest.execution import BUY, ExecutionConfig, OrderRequest, OrderType
    from market.events.table import load_stock_days
    from market.kis.client import KisRest
    from market.kis.orders import KisOrders
    from serving.brokers import Ack, Ended, KisBroker
    from vicap.record_cmd import kis_config

    stock_day = load_stock_days(vi_day.raw / "instruments.parquet")[(vi_day.code, vi_day.day)]
    lower = krx.price_limits(stock_day.base_price, stock_day.market, vi_day.day)[0]
    with _fake(vi_day, feed, speed=20) as fake:
        fake.jump_to(fake.begin_us)  # no feed subscriber here: the replay clock starts now
        settings = _settings(root, fake)

        async def session() -> list:
            async with KisRest(kis_config(settings), market_now_us=fake.now_us) as rest:
                broker = KisBroker(
                    KisOrders(rest), lambda code: stock_day.market, ExecutionConfig(), poll_s=0.1
                )
                request = OrderRequest(vi_day.code, BUY, 10, OrderType.LIMIT, lower, event_id="e")
                broker.submit(1, request, fake.now_us())
                events: list = []
                cancel_sent = False
                while not any(isinstance(e, Ended) for e in events):
                    if not cancel_sent and any(isinstance(e, Ack) for e in events):
                        broker.cancel(1, fake.now_us())  # as Executor._kill does for each open order
                        cancel_sent = True
                    events += await broker.poll(fake.now_us())
                    await asyncio.sleep(0.05)
                await broker.close()
                return events

        events = asyncio.run(asyncio.wait_for(session(), 30))
        placed = fake._orders
    assert [type(e).__name__ for e in events] == ["Ack", "Ended"]
    assert events[-1].state == "cancelled" and "10 of 10 not filled" in events[-1].reason
    assert placed[0].order.status == "cancelled" and placed[1].cancels == placed[0].odno
