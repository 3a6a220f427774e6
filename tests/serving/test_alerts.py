"""Alerts against a real loopback HTTP receiver (http.server on 127.0.0.1): what reaches Slack and
Telegram, the rate limit, redaction, failures that never reach the caller, and off by default."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from serving.alerts import AlertConfig, AlertKind, Alerts, AlertStats
from tests.serving.conftest import Receiver

TOKEN = "123456:AAH-secret-bot-token"
APP_SECRET = "kis-app-secret-XYZ"


def _slack(receiver: Receiver, **kw) -> AlertConfig:
    return AlertConfig(slack_webhook_url=f"{receiver.url}/services/T0/B0/hook-secret", **kw)


def _timed_send(alerts: Alerts, n: int = 1) -> float:
    start = time.perf_counter()
    for i in range(n):
        alerts.send(AlertKind.ERROR, f"order rejected {i}")
    return time.perf_counter() - start


def test_a_slack_alert_is_posted_as_json_text_with_its_kind_prefix(receiver):
    alerts = Alerts(_slack(receiver))
    alerts.send(AlertKind.ENTRY, "005930 buy 10 @ 71,000")
    alerts.close()
    text = "[vicap entry] 005930 buy 10 @ 71,000"
    assert receiver.requests == [("/services/T0/B0/hook-secret", {"text": text})]
    assert alerts.stats.sent == 1


def test_a_telegram_alert_goes_to_the_bot_path_with_the_chat_id(receiver):
    config = AlertConfig(telegram_bot_token=TOKEN, telegram_chat_id="-1001", telegram_api_url=receiver.url)
    alerts = Alerts(config)
    alerts.send(AlertKind.KILL_SWITCH, "daily loss limit hit")
    alerts.close()
    assert receiver.requests == [
        (f"/bot{TOKEN}/sendMessage", {"chat_id": "-1001", "text": "[vicap kill_switch] daily loss limit hit"})
    ]


def test_over_the_rate_limit_alerts_are_counted_and_summarised_in_the_next_one(receiver):
    now = [0.0]
    alerts = Alerts(_slack(receiver, per_minute=3), clock=lambda: now[0])
    for i in range(10):
        alerts.send(AlertKind.FEED_GAP, f"gap {i}")
    now[0] = 61.0
    alerts.send(AlertKind.INFO, "feed back")
    alerts.close()
    assert receiver.texts() == [
        "[vicap feed_gap] gap 0",
        "[vicap feed_gap] gap 1",
        "[vicap feed_gap] gap 2",
        "[vicap info] feed back (7 alerts suppressed)",
    ]
    assert alerts.stats.sent == 4 and alerts.stats.suppressed == 7


def test_a_secret_in_the_text_never_reaches_the_receiver_or_the_log(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # market.kis.client quiets it to WARNING
    config = AlertConfig(
        slack_webhook_url=f"{receiver.url}/hook-secret",
        telegram_bot_token=TOKEN,
        telegram_chat_id="-1001",
        telegram_api_url=receiver.url,
    )
    alerts = Alerts(config, secrets=[APP_SECRET])
    alerts.send(AlertKind.ERROR, f"auth failed with {APP_SECRET} via {TOKEN} and {receiver.url}/hook-secret")
    alerts.close()
    assert receiver.texts() == ["[vicap error] auth failed with *** via *** and ***"] * 2
    assert caplog.records, "httpx logs each request: the filter must rewrite it, not silence it"
    assert TOKEN not in caplog.text and "hook-secret" not in caplog.text


def test_a_failing_receiver_neither_blocks_nor_raises_and_counts_a_failure(receiver, caplog):
    receiver.status = 500
    alerts = Alerts(_slack(receiver, retries=1, retry_wait_s=0.01))
    assert _timed_send(alerts) < 0.1
    alerts.close()
    assert len(receiver.requests) == 2  # the first try and one retry
    assert alerts.stats.failed == 1 and alerts.stats.sent == 0
    assert "alert to slack failed: HTTP 500" in caplog.text and "hook-secret" not in caplog.text


def test_a_receiver_that_is_down_neither_blocks_nor_raises_and_counts_a_failure():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alerts = Alerts(AlertConfig(slack_webhook_url=f"http://127.0.0.1:{port}/x", retry_wait_s=0.01))
    assert _timed_send(alerts, 5) < 0.1
    alerts.close()
    assert alerts.stats.failed == 5 and alerts.stats.sent == 0


def test_with_nothing_configured_nothing_is_sent_and_no_thread_starts(receiver):
    def workers() -> int:
        return sum(t.name == "vicap-alerts" for t in threading.enumerate())

    before = workers()
    config = AlertConfig(telegram_api_url=receiver.url)  # an address alone configures no notifier
    alerts = Alerts(config, secrets=[APP_SECRET])
    alerts.send(AlertKind.ENTRY, "005930 buy")
    assert workers() == before and not alerts.enabled and not config.enabled
    alerts.close()
    assert alerts.stats == AlertStats() and receiver.requests == []


def test_a_telegram_token_without_a_chat_id_is_rejected():
    with pytest.raises(ValueError, match="set together"):
        AlertConfig(telegram_bot_token=TOKEN)
