"""The live executor's status page: one self-contained HTML page on 127.0.0.1 and its two endpoints.

The executor serves :func:`status_app` with uvicorn beside its loop and hands it a
:class:`StatusSource`. ``GET /`` is the page (inline CSS and JS, nothing from any other host, so it
works offline); ``GET /api/status`` is ``source.snapshot()`` as JSON (read-only, no token);
``POST /api/kill`` with ``{"reason": "..."}`` and ``Authorization: Bearer <token>`` calls
``source.kill(reason)``. An action is never allowed without a token: with none configured the
kill is refused (403) and the page says "set a status token to enable actions".

The page polls ``/api/status`` every second and re-renders in place: today's VIs as they happen,
signals, orders, fills, positions, P&L, risk state, feed health and the kill switch; it shows when
it last heard from the executor and turns stale (an orange banner) when a fetch fails. Every
string from the snapshot reaches the DOM through ``textContent``: stock names and reasons come
from outside. A Content-Security-Policy pins the inline script and style by their hashes and lets
the page connect to its own origin only; the Host header must name a loopback host (against DNS
rebinding) unless the caller passes other ``allowed_hosts``.

``snapshot`` and ``kill`` are called on the server's event loop (the handlers are ``async``): run
uvicorn inside the executor's own loop and they never race it; both must be quick. Snapshot keys
(the page renders each, an absent or empty list as "none yet"): ``now``, ``mode``, ``vis``,
``signals``, ``orders``, ``fills``, ``positions``, ``pnl``, ``risk``, ``feed``.

The module is longer than most: the page's HTML, CSS and JS sit here beside the server that
serves them, so the page is one file with no packaging of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
MAX_REASON = 200  # characters of a kill reason kept
NO_TOKEN = "set a status token to enable actions"
WRONG_TOKEN = "missing or wrong bearer token (Authorization: Bearer <token>)"


class StatusSource(Protocol):
    """What the page shows and the one action it takes; the live executor implements it."""

    def snapshot(self) -> dict:
        """The executor's state now, JSON-able (keys in the module docstring)."""
        ...

    def kill(self, reason: str) -> None:
        """The kill switch: cancel open orders and refuse new ones."""
        ...


def status_app(
    source: StatusSource, token: SecretStr | None, *, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS
) -> Starlette:
    """The status page and its API over ``source``; ``token`` guards the kill (None: no actions)."""
    secret = token.get_secret_value().encode() if token is not None else b""
    page = _page(actions=bool(secret))

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def status(request: Request) -> Response:
        try:
            snapshot = source.snapshot()
        except Exception as exc:  # the page shows the failure as stale, the log keeps the traceback
            log.exception("status snapshot failed")
            return _error(503, f"snapshot failed: {type(exc).__name__}")
        body = json.dumps(_json_safe(snapshot), ensure_ascii=False, default=str)
        return Response(body, media_type="application/json", headers=NO_STORE)

    async def kill(request: Request) -> Response:
        if not secret:
            return _error(403, NO_TOKEN)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret):
            return _error(401, WRONG_TOKEN, {"www-authenticate": "Bearer"})
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 'the body must be JSON: {"reason": "..."}')
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            return _error(400, "a reason is required")
        reason = reason.strip()[:MAX_REASON]
        log.warning("kill switch pulled from the status page: %s", reason)
        try:
            source.kill(reason)
        except Exception as exc:  # the operator must see that the kill did not go through
            log.exception("kill failed")
            return _error(500, f"kill failed: {type(exc).__name__}: {exc}")
        return JSONResponse({"killed": True, "reason": reason}, headers=NO_STORE)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/status", status, methods=["GET"]),
        Route("/api/kill", kill, methods=["POST"]),
    ]
    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    return Starlette(routes=routes, middleware=[hosts])


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})})


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None: the browser's JSON.parse rejects them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _page(actions: bool) -> bytes:
    return PAGE.replace("__ACTIONS__", "on" if actions else "off").encode()


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


STYLE = """
:root { --red: #c62828; --blue: #1565c0; --green: #2e7d32; --ink: #1d232a; --muted: #5f6b76;
  --line: #dde2e7; --bg: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: var(--bg); font: 14px/1.45 system-ui, -apple-system,
  "Segoe UI", "Noto Sans KR", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Malgun Gothic", sans-serif; }
header { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; align-items: center; padding: .7rem 1.2rem;
  background: var(--ink); color: #fff; }
h1 { font-size: 1.15rem; margin: 0; }
h2 { font-size: .78rem; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
  margin: 0 0 .5rem; }
.badge { display: inline-block; padding: .05rem .55rem; border-radius: 999px; background: #3a4550;
  margin-right: .3rem; font-size: .85rem; }
.badge.real { background: var(--red); font-weight: 700; }
#clock { margin-left: auto; color: #c9d1d9; font-size: .85rem; }
.banner { padding: .6rem 1.2rem; font-weight: 700; color: #fff; }
#killed-banner { background: var(--red); font-size: 1.15rem; }
#stale-banner { background: #e65100; }
body.is-stale main { opacity: .5; }
main { padding: 1rem 1.2rem; display: grid; gap: 1rem; }
.row { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); gap: 1rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 1rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .7rem 1rem;
  overflow-x: auto; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .15rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; font-weight: 600; color: var(--muted); border-bottom: 1px solid var(--line);
  padding: .2rem .45rem; white-space: nowrap; }
td { border-bottom: 1px solid #eef1f4; padding: .2rem .45rem; white-space: nowrap; }
td.wrap { white-space: normal; }
.num { text-align: right; }
tr.empty td, .note { color: var(--muted); font-style: italic; }
.up { color: var(--red); }
.down { color: var(--blue); }
.pill { padding: .05rem .5rem; border-radius: 999px; color: #fff; background: #78848f; }
.pill.live { background: var(--green); }
.pill.stale { background: #e65100; }
.pill.killed { background: var(--red); }
form { display: grid; gap: .45rem; }
input { width: 100%; padding: .35rem .5rem; border: 1px solid #b8c1ca; border-radius: 6px; font: inherit; }
button { background: var(--red); color: #fff; border: 0; border-radius: 6px; padding: .5rem;
  font: inherit; font-weight: 700; cursor: pointer; }
button:disabled { background: #9aa5b1; cursor: default; }
#kill-result.err { color: var(--red); font-weight: 600; }
#kill-result.ok { color: var(--green); font-weight: 600; }
"""

SCRIPT = """
"use strict";
const $ = (id) => document.getElementById(id);
const DASH = "\\u2014", TOKEN_KEY = "vicap-status-token", POLL_MS = 1000, MAX_ROWS = 200;
const CLOCK = new Intl.DateTimeFormat("en-GB", {timeZone: "Asia/Seoul", hour: "2-digit",
  minute: "2-digit", second: "2-digit", hour12: false});
let lastOk = null;

function el(tag, cls, ...kids) {  // kids are nodes or text (append makes text nodes: no HTML parsing)
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.append(...kids.map((k) => (k instanceof Node ? k : String(k))));
  return e;
}
const blank = (v) => v === null || v === undefined || v === "";
function num(v, digits = 0) {
  if (blank(v)) return DASH;
  const n = Number(v);
  return Number.isFinite(n) ? n.toLocaleString("ko-KR", {maximumFractionDigits: digits}) : String(v);
}
function signed(v) {
  const n = Number(v), cls = blank(v) || !n ? "" : n > 0 ? "up" : "down";
  return el("span", cls, (n > 0 ? "+" : "") + num(v));
}
function hms(t) {
  if (blank(t)) return DASH;
  const m = /\\d{2}:\\d{2}:\\d{2}/.exec(String(t));
  return m ? m[0] : String(t);
}
const dir = (d) => (Number(d) > 0 ? el("span", "up", "\\u25b2 up") : el("span", "down", "\\u25bc down"));
const side = (s) => el("span", s === "buy" ? "up" : "down", s || DASH);
const N = (f, digits = 0) => [(r) => num(f(r), digits), "num"];

function table(id, rows, cols, newestFirst = true) {
  const list = Array.isArray(rows) ? rows : [];
  const shown = newestFirst ? list.slice(-MAX_ROWS).reverse() : list.slice(0, MAX_ROWS);
  const body = shown.map((r) => el("tr", null, ...cols.map(([, f, cls]) => {
    const v = f(r);
    return el("td", cls, blank(v) ? DASH : v);
  })));
  const note = (text) => {
    const td = el("td", null, text);
    td.colSpan = cols.length;
    return el("tr", "empty", td);
  };
  if (!list.length) body.push(note("none yet"));
  if (list.length > shown.length) body.push(note(`${list.length - shown.length} more not shown`));
  const head = el("tr", null, ...cols.map(([name, , cls]) => el("th", cls, name)));
  $(id).replaceChildren(el("thead", null, head), el("tbody", null, ...body));
}
function pairs(id, items) {
  const dd = (v) => el("dd", null, blank(v) ? DASH : v);
  $(id).replaceChildren(...items.flatMap(([k, v]) => [el("dt", null, k), dd(v)]));
}
function outputs(o) {
  const fmt = (v) => (blank(v) || !Number.isFinite(Number(v)) ? DASH : Number(v).toPrecision(3));
  return Object.entries(o || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" \\u00b7 ") || DASH;
}

function render(d) {
  const mode = d.mode || {}, risk = d.risk || {}, feed = d.feed || {}, pnl = d.pnl || {};
  $("mode").replaceChildren(el("span", "badge", "source " + (mode.source || DASH)),
    el("span", mode.broker === "kis-real" ? "badge real" : "badge", "broker " + (mode.broker || DASH)),
    el("span", "badge", "account " + (mode.account || DASH)));
  $("now").textContent = d.now || DASH;
  const killed = !!risk.killed;
  $("killed-banner").hidden = !killed;
  const why = risk.kill_reason || "no reason given";
  $("killed-banner").textContent = killed ? "KILLED \\u2014 trading stopped: " + why : "";
  document.title = (killed ? "KILLED \\u00b7 " : "") + "vicap status";

  table("vis", d.vis, [["trigger", (r) => hms(r.trigger_time)], ["code", (r) => r.stock_code],
    ["name", (r) => r.stock_name, "wrap"], ["dir", (r) => dir(r.direction)], ["type", (r) => r.vi_type],
    ["release", (r) => (blank(r.release_time) ? el("span", "note", "auction running") : hms(r.release_time))],
    ["event", (r) => r.event_id]]);
  table("signals", d.signals, [["time", (r) => hms(r.time)], ["event", (r) => r.event_id],
    ["offset s", ...N((r) => r.offset_s, 1)], ["outputs", (r) => outputs(r.outputs), "wrap"],
    ["decision", (r) => r.decision]]);
  table("orders", d.orders, [["time", (r) => hms(r.time)], ["order", (r) => r.client_id],
    ["code", (r) => r.stock_code], ["side", (r) => side(r.side)], ["qty", ...N((r) => r.qty)],
    ["price", (r) => (blank(r.price) ? "market" : num(r.price)), "num"], ["state", (r) => r.state],
    ["reason", (r) => r.reason, "wrap"]]);
  table("fills", d.fills, [["time", (r) => hms(r.time)], ["order", (r) => r.client_id],
    ["code", (r) => r.stock_code], ["side", (r) => side(r.side)], ["qty", ...N((r) => r.qty)],
    ["price", ...N((r) => r.price)], ["fees", ...N((r) => r.fees)]]);
  table("positions", d.positions, [["code", (r) => r.stock_code], ["qty", ...N((r) => r.qty)],
    ["avg price", ...N((r) => r.avg_price, 1)], ["mark", ...N((r) => r.mark)],
    ["unrealised", (r) => signed(r.unrealised), "num"]], false);
  table("refusals", risk.refusals, [["time", (r) => hms(r.time)], ["code", (r) => r.stock_code],
    ["reason", (r) => r.reason, "wrap"]]);

  pairs("pnl", [["realised", signed(pnl.realised)], ["unrealised", signed(pnl.unrealised)],
    ["fees", num(pnl.fees)], ["total", signed(pnl.total)]]);
  const state = feed.state || "unknown";
  pairs("feed", [["state", el("span", "pill " + state, state)], ["lag ms", num(feed.lag_ms, 1)],
    ["last frame age s", num(feed.last_frame_age_s, 1)], ["frames", num(feed.frames)],
    ["drift", num(feed.drift)], ["reconnects", num(feed.reconnects)], ["gaps", num(feed.gaps)]]);
  const limit = (v) => (typeof v === "number" ? num(v, 2) : String(v));
  const limits = Object.entries(risk.limits || {}).map(([k, v]) => [k, limit(v)]);
  pairs("risk", [["state", el("span", killed ? "pill killed" : "pill live", killed ? "KILLED" : "trading")],
    ["orders last minute", num(risk.orders_last_minute)], ...limits]);
}

function setStale(err) {
  document.body.classList.toggle("is-stale", !!err);
  $("stale-banner").hidden = !err;
  if (err) {
    const since = lastOk ? "no update since " + CLOCK.format(lastOk) : "no update yet";
    $("stale-banner").textContent = `STALE \\u2014 ${since} (${err.message || err}); retrying every second`;
  }
}
async function refresh() {
  const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), 2500);
  try {
    const r = await fetch("api/status", {cache: "no-store", signal: ctl.signal});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    lastOk = new Date();
    $("updated").textContent = CLOCK.format(lastOk);
    setStale(null);
  } catch (e) {
    setStale(e.name === "AbortError" ? new Error("timed out") : e);
  } finally {
    clearTimeout(timer);
  }
}
async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

async function kill(ev) {
  ev.preventDefault();
  const out = $("kill-result"), token = $("kill-token").value, reason = $("kill-reason").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  const say = (text, cls) => { out.textContent = text; out.className = cls; };
  if (!reason) return say("give a reason", "err");
  say("sending\\u2026", "");
  try {
    const r = await fetch("api/kill", {method: "POST", body: JSON.stringify({reason}),
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token}});
    const body = await r.json().catch(() => ({}));
    if (r.ok) say("killed: " + body.reason, "ok");
    else if (r.status === 401) say("refused: wrong token (401)", "err");
    else say(`refused (${r.status}): ${body.error || r.statusText}`, "err");
  } catch (e) {
    say("could not reach the executor: " + e.message, "err");
  }
  refresh();
}

$("kill-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
$("kill-form").addEventListener("submit", kill);
if (document.body.dataset.actions !== "on") {
  for (const id of ["kill-token", "kill-reason", "kill-button"]) $(id).disabled = true;
  $("kill-result").textContent = "actions are off: set a status token to enable actions";
}
loop();
"""

PAGE = f"""<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vicap status</title>
<style>{STYLE}</style>
</head>
<body data-actions="__ACTIONS__">
<header>
  <h1>vicap live</h1>
  <div id="mode"></div>
  <div id="clock">last updated <b id="updated">never</b>
    &middot; executor clock <span id="now">&mdash;</span></div>
</header>
<div id="killed-banner" class="banner" role="alert" hidden></div>
<div id="stale-banner" class="banner" role="alert" hidden></div>
<main>
  <div class="cards">
    <section class="card"><h2>P&amp;L (KRW)</h2><dl id="pnl"></dl></section>
    <section class="card"><h2>Feed health</h2><dl id="feed"></dl></section>
    <section class="card"><h2>Risk</h2><dl id="risk"></dl></section>
    <section class="card"><h2>Kill switch</h2>
      <form id="kill-form" autocomplete="off">
        <input id="kill-token" type="password" placeholder="status token" aria-label="status token">
        <input id="kill-reason" type="text" maxlength="200" placeholder="reason" aria-label="reason">
        <button id="kill-button" type="submit">KILL: cancel orders, stop trading</button>
        <div id="kill-result" role="status"></div>
      </form>
    </section>
  </div>
  <div class="row">
    <section class="card"><h2>VIs today</h2><table id="vis"></table></section>
    <section class="card"><h2>Signals</h2><table id="signals"></table></section>
  </div>
  <div class="row">
    <section class="card"><h2>Orders</h2><table id="orders"></table></section>
    <section class="card"><h2>Fills</h2><table id="fills"></table></section>
  </div>
  <div class="row">
    <section class="card"><h2>Positions</h2><table id="positions"></table></section>
    <section class="card"><h2>Risk refusals</h2><table id="refusals"></table></section>
  </div>
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""

PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}
NO_STORE = {"cache-control": "no-store"}

__all__ = ["StatusSource", "status_app"]
