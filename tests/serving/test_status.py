"""The status page served by a real uvicorn on 127.0.0.1: its endpoints' rules over HTTP, and the page
itself in a real headless Chromium (Debian's, driven by Playwright).

Without the system's chromium the browser tests skip (``apt-get install chromium fonts-noto-cjk``),
unless ``CI`` is set: CI must run them. ``VICAP_STATUS_SCREENSHOT=/tmp/status.png`` saves a look at
the page.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from serving.status import status_app

TOKEN = "s3cret-token"
SEEN_WITHIN_MS = 3000


# fmt: off
def _snapshot() -> dict:
    return {
        "now": "2026-03-12T09:31:07+09:00",
        "mode": {"source": "replay", "broker": "sim", "account": "****5678-01"},
        "vis": [
            {"event_id": "005930-20260312-093105", "stock_code": "005930", "stock_name": "삼성전자",
             "direction": 1, "vi_type": "dynamic", "trigger_time": "2026-03-12T09:31:05+09:00",
             "release_time": "2026-03-12T09:33:05+09:00"},
        ],
        "signals": [
            {"time": "2026-03-12T09:31:06+09:00", "event_id": "005930-20260312-093105", "offset_s": 1,
             "outputs": {"p_up": 0.62, "ret_60s": 0.0041}, "decision": "buy"},
        ],
        "orders": [
            {"client_id": "o-1", "time": "2026-03-12T09:31:06+09:00", "stock_code": "005930", "side": "buy",
             "qty": 10, "price": None, "state": "filled", "reason": "<b>vi-momentum</b>"},
        ],
        "fills": [],
        "positions": [
            {"stock_code": "005930", "qty": 10, "avg_price": 71200, "mark": 71500, "unrealised": 3000},
        ],
        "pnl": {"realised": 0, "unrealised": 3000, "fees": 107, "total": 2893},
        "risk": {"killed": False, "kill_reason": "", "limits": {"max_orders_per_minute": 20},
                 "orders_last_minute": 1, "refusals": []},
        "feed": {"lag_ms": 12.5, "frames": 1834, "drift": 0, "reconnects": 0, "gaps": 0,
                 "last_frame_age_s": 0.2, "state": "live"},
    }
# fmt: on


class FakeSource:
    """A StatusSource the test drives: ``update`` changes the snapshot, ``kill`` records its reasons."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = _snapshot()
        self.kills: list[str] = []

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._data)

    def update(self, change) -> None:
        with self._lock:
            change(self._data)

    def kill(self, reason: str) -> None:
        self.kills.append(reason)
        self.update(lambda d: d["risk"].update(killed=True, kill_reason=reason))


class Served:
    """``status_app`` under a real uvicorn on a free 127.0.0.1 port, in a thread."""

    def __init__(self, token: str | None) -> None:
        self.source = FakeSource()
        app = status_app(self.source, SecretStr(token) if token else None)
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture
def served() -> Iterator[Served]:
    server = Served(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def open_server() -> Iterator[Served]:
    server = Served(None)
    yield server
    server.stop()


def test_kill_needs_the_right_bearer_token(served):
    url, source = served.url + "api/kill", served.source
    assert httpx.post(url, json={"reason": "x"}).status_code == 401
    wrong = httpx.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert source.kills == []
    right = httpx.post(url, json={"reason": " feed lost "}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and right.json() == {"killed": True, "reason": "feed lost"}
    assert source.kills == ["feed lost"]


def test_no_action_is_allowed_without_a_configured_token(open_server):
    for auth in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}"}):
        refused = httpx.post(open_server.url + "api/kill", json={"reason": "x"}, headers=auth)
        assert refused.status_code == 403
        assert "set a status token to enable actions" in refused.json()["error"]
    assert 'data-actions="off"' in httpx.get(open_server.url).text
    assert open_server.source.kills == []


def test_kill_needs_a_reason(served):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(served.url + "api/kill", json={"reason": "  "}, headers=auth).status_code == 400
    assert httpx.post(served.url + "api/kill", content=b"not json", headers=auth).status_code == 400
    assert served.source.kills == []


def test_status_is_read_only_json_without_a_token_and_never_sends_nan(served):
    served.source.update(lambda d: d["feed"].update(lag_ms=float("nan")))
    reply = httpx.get(served.url + "api/status")
    assert reply.status_code == 200 and reply.json()["vis"][0]["stock_name"] == "삼성전자"
    assert reply.json()["feed"]["lag_ms"] is None
    assert httpx.post(served.url + "api/status").status_code == 405


def test_the_page_loads_nothing_from_another_host(served):
    page = httpx.get(served.url)
    assert page.headers["content-type"].startswith("text/html")
    assert re.findall(r"https?://", page.text) == []
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", page.text)
    assert "Noto Sans CJK KR" in page.text and 'data-actions="on"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp


def test_a_host_other_than_loopback_is_refused(served):
    assert httpx.get(served.url + "api/status", headers={"Host": "rebound.example"}).status_code == 400


# ---- the page in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "the browser tests need Debian's chromium (apt-get install chromium fonts-noto-cjk)"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run them")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="ko-KR")
    opened = context.new_page()
    opened.goto(served.url)
    yield opened
    context.close()


def test_the_page_shows_todays_vis_in_korean_with_their_times_and_every_section(page):
    from playwright.sync_api import expect

    vis = page.locator("#vis")
    expect(vis).to_contain_text("삼성전자", timeout=SEEN_WITHIN_MS)
    expect(vis).to_contain_text("09:31:05")
    expect(vis).to_contain_text("09:33:05")
    expect(page.locator("#updated")).not_to_have_text("never")
    expect(page.locator("#mode")).to_contain_text("****5678-01")
    expect(page.locator("#signals")).to_contain_text("p_up 0.620")
    expect(page.locator("#orders")).to_contain_text("market")
    expect(page.locator("#fills")).to_contain_text("none yet")
    expect(page.locator("#refusals")).to_contain_text("none yet")
    expect(page.locator("#positions")).to_contain_text("71,500")
    expect(page.locator("#pnl")).to_contain_text("+2,893")
    expect(page.locator("#feed")).to_contain_text("1,834")
    expect(page.locator("#risk")).to_contain_text("max_orders_per_minute")
    # a reason from outside is shown as text, never parsed as HTML
    expect(page.locator("#orders")).to_contain_text("<b>vi-momentum</b>")
    assert page.locator("#orders b").count() == 0
    assert page.locator("#killed-banner").is_hidden() and page.locator("#stale-banner").is_hidden()
    fonts = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert "Noto Sans CJK KR" in fonts
    if target := os.environ.get("VICAP_STATUS_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)


def test_the_page_follows_the_source_without_reloading(page, served):
    from playwright.sync_api import expect

    expect(page.locator("#vis")).to_contain_text("삼성전자", timeout=SEEN_WITHIN_MS)
    page.evaluate("window.notReloaded = true")

    def change(d: dict) -> None:
        d["vis"].append(
            {"event_id": "000660-20260312-094210", "stock_code": "000660", "stock_name": "SK하이닉스",
             "direction": -1, "vi_type": "static", "trigger_time": "2026-03-12T09:42:10+09:00",
             "release_time": None}
        )  # fmt: skip
        d["fills"].append(
            {"time": "2026-03-12T09:42:11+09:00", "client_id": "o-2", "stock_code": "000660", "side": "sell",
             "qty": 3, "price": 182500, "fees": 41}
        )  # fmt: skip
        d["feed"].update(gaps=4, reconnects=1)

    served.source.update(change)
    expect(page.locator("#vis")).to_contain_text("SK하이닉스", timeout=SEEN_WITHIN_MS)
    expect(page.locator("#vis")).to_contain_text("auction running")
    expect(page.locator("#fills")).to_contain_text("182,500", timeout=SEEN_WITHIN_MS)
    expect(page.locator("#feed dd").nth(6)).to_have_text("4", timeout=SEEN_WITHIN_MS)
    assert page.evaluate("window.notReloaded") is True


def test_a_wrong_token_is_refused_and_the_right_one_kills(page, served):
    from playwright.sync_api import expect

    page.fill("#kill-token", "not-the-token")
    page.fill("#kill-reason", "drift on 005930")
    page.click("#kill-button")
    expect(page.locator("#kill-result")).to_contain_text("refused: wrong token", timeout=SEEN_WITHIN_MS)
    assert served.source.kills == []
    assert page.locator("#killed-banner").is_hidden()

    page.fill("#kill-token", TOKEN)
    page.click("#kill-button")
    expect(page.locator("#kill-result")).to_contain_text("killed: drift on 005930", timeout=SEEN_WITHIN_MS)
    assert served.source.kills == ["drift on 005930"]
    banner = page.locator("#killed-banner")
    expect(banner).to_be_visible(timeout=SEEN_WITHIN_MS)
    expect(banner).to_contain_text("KILLED")
    expect(banner).to_contain_text("drift on 005930")
    assert page.evaluate("sessionStorage.getItem('vicap-status-token')") == TOKEN


def test_the_page_marks_itself_stale_when_the_server_stops(page, served):
    from playwright.sync_api import expect

    expect(page.locator("#updated")).not_to_have_text("never", timeout=SEEN_WITHIN_MS)
    served.stop()
    stale = page.locator("#stale-banner")
    expect(stale).to_be_visible(timeout=SEEN_WITHIN_MS)
    expect(stale).to_contain_text("STALE")
    expect(stale).to_contain_text("no update since")
