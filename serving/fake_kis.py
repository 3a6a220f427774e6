"""A loopback fake KIS (REST and WebSocket, 127.0.0.1, ephemeral ports) replaying one day of a
dataset, for the client's fault tests, the recorder's round trip and the demo.

It speaks the documented formats and no more: the frames come from
:func:`market.kis.export.build_feed` (the exporter's own source: batches at the open and close,
PINGPONG every 100 s), sent only for what a client registered, as the replay clock passes their
receive times. The replay clock starts ``lead_s`` after the first registration (so a client can
register its watchlist first) and runs ``speed`` times faster than the wall. REST answers tokenP
(one token a minute, EGW00133 otherwise: the real rule, always on), Approval, VI-status polls
as of the replay clock (``page_size`` rows a page, tr_cont M while more follow), cash orders
(filled by backtest's :class:`~backtest.execution.Venue` on the stock's tape at the replay clock;
resting orders fill as the clock passes their fill time), cancels (주식주문(정정취소): what is left
of an order, as of the replay clock) and the daily order inquiry.

Faults on demand, from any thread: :meth:`FakeKis.drop` (abort the TCP connection: the client
sees close code 1006), :meth:`FakeKis.drift` (append fields to every record),
:meth:`FakeKis.rate_limit` (EGW00201 for the next N calls), :meth:`FakeKis.expire_tokens`
(EGW00123 on the next call), :meth:`FakeKis.delay_next_order_reply` (the order is placed, the reply
comes late).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, serve

from backtest.execution import BUY, ExecutionConfig, Fill, Order, OrderRequest, OrderType, Venue, new_order
from backtest.tape import load_tape
from market import krx
from market.events.detector import StockDay
from market.kis import client as api
from market.kis import formats as kis
from market.kis import orders
from market.kis.export import PINGPONG, Feed, build_feed, vi_status_response

# error replies, as KIS words them
RATE_LIMITED = {"rt_cd": "1", "msg_cd": api.RATE_LIMITED, "msg1": "초당 거래건수를 초과하였습니다."}
EXPIRED = {"rt_cd": "1", "msg_cd": api.TOKEN_EXPIRED, "msg1": "기간이 만료된 token 입니다."}
INVALID = {"rt_cd": "1", "msg_cd": api.TOKEN_INVALID, "msg1": "유효하지 않은 token 입니다."}
TOO_SOON = {
    "error_code": api.TOKEN_TOO_SOON,
    "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
}
BAD_KEY = {"error_code": "EGW00103", "error_description": "유효하지 않은 AppKey입니다."}


def _control(tr_id: str, tr_key: str, code: str, text: str) -> str:
    """A registration reply (OPSP0000 subscribed, 0001 unsubscribed, 0002 already, 0003 not
    subscribed, 0008 too many, 0011 bad approval key)."""
    ok = code in ("OPSP0000", "OPSP0001")
    return json.dumps(
        {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"},
            "body": {"rt_cd": "0" if ok else "1", "msg_cd": code, "msg1": text},
        }
    )


def drifted(text: str, extra: int) -> str:
    """A data frame with ``extra`` fields appended to each record (what KIS does without notice)."""
    tr_id, count, payload = kis.split_header(text)
    values = payload.split("^")
    width = kis.record_width(tr_id, count, len(values))
    records = ["^".join(values[i * width : (i + 1) * width] + ["0"] * extra) for i in range(count)]
    return f"0|{tr_id}|{count:03d}|" + "^".join(records)


@dataclass
class _Placed:
    order: Order
    odno: str
    ord_tmd: str
    fills: list[Fill] = field(default_factory=list)
    cancels: str = ""  # a cancel order (its own ODNO, no fills): the ODNO of the order it cancelled


class FakeKis:
    """``with FakeKis.replay(raw, day, ["005930"], speed=60) as fake:`` then point a client at
    ``fake.rest_url`` and ``fake.ws_url``; ``FakeKis(raw, feed)`` reuses a built feed (building
    one reads the whole stock-day). ``clock`` (wall seconds) drives the token rules only."""

    @classmethod
    def replay(
        cls,
        raw: Path,
        day: dt.date,
        codes: list[str],
        start: dt.time | None = None,
        end: dt.time | None = None,
        seed: int = 0,
        **options,
    ) -> FakeKis:
        """The fake replaying ``codes`` on ``day`` between exchange times ``start`` and ``end``."""
        return cls(raw, build_feed(raw, day, codes, start, end, seed), **options)

    def __init__(
        self,
        raw: Path,
        feed: Feed,
        *,
        speed: float = 1.0,
        lead_s: float = 0.3,
        app_key: str = "fake-app-key",
        app_secret: str = "fake-app-secret",
        account: str = "50000000-01",
        paper: bool = True,
        page_size: int = 30,
        execution: ExecutionConfig | None = None,
        clock: Callable[[], float] = time.time,
        token_interval_s: float = 60.0,
    ) -> None:
        self.raw, self.feed, self.day, self.speed, self.lead_s = raw, feed, feed.day, speed, lead_s
        self._recv = [f[0] for f in feed.frames]
        self.begin_us = feed.first_us - 1_000_000
        self._keys = (app_key, app_secret, account, paper)
        self.page_size, self.execution = page_size, execution or ExecutionConfig()
        self._clock, self._token_interval_s = clock, token_interval_s
        self._t0: float | None = None  # wall time the replay clock starts
        self._tokens: set[str] = set()
        self._expired: set[str] = set()
        self._last_token = -1e18
        self._approvals: set[str] = set()
        self._pages: dict[str, tuple[list[dict], int]] = {}
        self._venues: dict[str, Venue] = {}
        self._orders: list[_Placed] = []
        self._refuse, self._extra, self._drop_after, self._reply_delay = 0, 0, -1, 0.0
        self._conns: set[ServerConnection] = set()
        self.stats = {"tokens": 0, "frames_sent": 0, "pongs": 0, "drops": 0, "rate_limited": 0, "orders": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.rest_url = self.ws_url = ""

    def __repr__(self) -> str:
        return f"FakeKis({self.day}, {self.feed.codes}, speed={self.speed}, rest={self.rest_url!r})"

    # -- the replay clock --------------------------------------------------------------------

    def now_us(self) -> int:
        """The replay clock (µs since the epoch, the replayed day)."""
        if self._t0 is None:
            return self.begin_us
        return self.begin_us + max(0, int((time.monotonic() - self._t0) * self.speed * 1e6))

    def jump_to(self, ts_us: int, start: float | None = None) -> None:
        """Move the replay clock to ``ts_us``, running from the ``time.monotonic()`` instant
        ``start`` (default now: the machine's clock, so another process can compute it alike);
        frames before ``ts_us`` are skipped."""
        self.begin_us, self._t0 = ts_us, time.monotonic() if start is None else start

    @property
    def done(self) -> bool:
        """Every frame's time has passed."""
        return not self.feed.frames or self.now_us() > self.feed.frames[-1][0]

    # -- faults, callable from any thread ----------------------------------------------------

    def drop(self, after_frames: int = 0) -> None:
        """Abort every connection (close code 1006 at the client) now, or after that many more
        frames have been sent."""
        if after_frames > 0:
            self._drop_after = after_frames
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._abort_all)

    def drift(self, extra_fields: int) -> None:
        """Append ``extra_fields`` fields to every record of the frames sent from now on."""
        self._extra = extra_fields

    def rate_limit(self, calls: int) -> None:
        """Refuse the next ``calls`` REST calls with EGW00201 (HTTP 500)."""
        self._refuse = calls

    def expire_tokens(self) -> None:
        """Every token issued so far is expired: the next call with one gets EGW00123."""
        self._expired |= self._tokens
        self._tokens.clear()

    def delay_next_order_reply(self, seconds: float) -> None:
        """Place the next order but reply ``seconds`` late (the client's timeout fires first)."""
        self._reply_delay = seconds

    @property
    def orders(self) -> int:
        return len(self._orders)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeKis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fake-kis", daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("the fake KIS server did not start in 20 s")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(20)

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve(ready))
        self._loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        rest_sock = socket.socket()
        rest_sock.bind(("127.0.0.1", 0))
        # log_config=None: uvicorn's own would bind handlers to the sys.stderr of the moment (a
        # test's capture, closed later)
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", log_config=None)
        rest = uvicorn.Server(config)
        rest_task = asyncio.create_task(rest.serve(sockets=[rest_sock]))
        async with serve(self._session, "127.0.0.1", 0, ping_interval=None) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            while not rest.started:
                await asyncio.sleep(0.01)
            self.rest_url = f"http://127.0.0.1:{rest_sock.getsockname()[1]}"
            self.ws_url = f"ws://127.0.0.1:{port}"
            ready.set()
            await self._stopping.wait()
            self._abort_all()
        rest.should_exit = True
        await rest_task

    def _abort_all(self) -> None:
        for ws in list(self._conns):
            ws.transport.abort()  # no closing handshake: the client reads code 1006
        self.stats["drops"] += 1

    # -- WebSocket ---------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        self._conns.add(ws)
        subs: set[tuple[str, str]] = set()
        sender = asyncio.create_task(self._send_feed(ws, subs))
        try:
            async for message in ws:
                await self._on_message(ws, str(message), subs)
        except Exception:
            pass
        finally:
            sender.cancel()
            self._conns.discard(ws)

    async def _on_message(self, ws: ServerConnection, text: str, subs: set[tuple[str, str]]) -> None:
        msg = json.loads(text)
        if msg.get("header", {}).get("tr_id") == PINGPONG:
            self.stats["pongs"] += 1
            return
        header, body = msg.get("header", {}), msg.get("body", {}).get("input", {})
        key = (body.get("tr_id", ""), body.get("tr_key", ""))
        if header.get("approval_key") not in self._approvals:
            reply = _control(*key, "OPSP0011", "invalid approval : NOT FOUND")
        elif header.get("tr_type") == "2":
            known = key in subs
            subs.discard(key)
            reply = _control(
                *key,
                "OPSP0001" if known else "OPSP0003",
                "UNSUBSCRIBE SUCCESS" if known else "UNSUBSCRIBE ERROR(not found!)",
            )
        elif key in subs:
            reply = _control(*key, "OPSP0002", "ALREADY IN SUBSCRIBE")
        elif len(subs) >= 40:
            reply = _control(*key, "OPSP0008", "MAX SUBSCRIBE OVER")
        elif key[0] not in kis.FIELDS:
            reply = _control(*key, "OPSP0007", "SUBSCRIBE ERROR : internal error")
        else:
            subs.add(key)
            reply = kis.subscribe_ack(*key)
            if self._t0 is None:
                self._t0 = time.monotonic() + self.lead_s
        await ws.send(reply)

    async def _send_feed(self, ws: ServerConnection, subs: set[tuple[str, str]]) -> None:
        """Send the frames as the replay clock passes them, from where the clock is when the
        connection opens (frames of a dropped connection's gap are lost, as they are live)."""
        frames = self.feed.frames
        i = bisect.bisect_left(self._recv, self.now_us())  # before the clock starts: from the first
        while self._t0 is None or time.monotonic() < self._t0:
            await asyncio.sleep(0.01)
        while i < len(frames):
            wait_us = frames[i][0] - self.now_us()
            if wait_us > 0:
                await asyncio.sleep(min(wait_us / 1e6 / self.speed, 0.5))
                continue
            _, tr_id, code, text = frames[i]
            i += 1
            if tr_id != PINGPONG and (tr_id, code) not in subs:
                continue
            await ws.send(drifted(text, self._extra) if self._extra and tr_id != PINGPONG else text)
            self.stats["frames_sent"] += 1
            if self._drop_after > 0:
                self._drop_after -= 1
                if self._drop_after == 0:
                    self._drop_after = -1
                    self._abort_all()
                    return

    # -- REST --------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(api.TOKEN_PATH, self._token, methods=["POST"]),
                Route(api.APPROVAL_PATH, self._approval, methods=["POST"]),
                Route(api.VI_STATUS_PATH, self._vi_status, methods=["GET"]),
                Route(orders.ORDER_CASH_PATH, self._order_cash, methods=["POST"]),
                Route(orders.REVISE_CANCEL_PATH, self._cancel, methods=["POST"]),
                Route(orders.DAILY_ORDERS_PATH, self._daily_orders, methods=["GET"]),
            ]
        )

    def _keys_ok(self, key: str, secret: str) -> bool:
        return (key, secret) == self._keys[:2]

    async def _token(self, request: Request) -> JSONResponse:
        body = await request.json()
        if not self._keys_ok(body.get("appkey", ""), body.get("appsecret", "")):
            return JSONResponse(BAD_KEY, 403)
        if self._clock() - self._last_token < self._token_interval_s:
            return JSONResponse(TOO_SOON, 403)
        self._last_token = self._clock()
        token = f"fake-token-{uuid.uuid4().hex}"
        self._tokens.add(token)
        self.stats["tokens"] += 1
        expires = dt.datetime.fromtimestamp(self._last_token + 86_400, krx.SEOUL)
        return JSONResponse(
            {
                "access_token": token,
                "access_token_token_expired": expires.strftime("%Y-%m-%d %H:%M:%S"),
                "token_type": "Bearer",
                "expires_in": 86_400,
            }
        )

    async def _approval(self, request: Request) -> JSONResponse:
        body = await request.json()
        if not self._keys_ok(body.get("appkey", ""), body.get("secretkey", "")):
            return JSONResponse(BAD_KEY, 403)
        key = str(uuid.uuid4())
        self._approvals.add(key)
        return JSONResponse({"approval_key": key})

    def _refused(self, request: Request) -> JSONResponse | None:
        """The error a call gets before it is served, if any: rate limit, then the token."""
        if self._refuse > 0:
            self._refuse -= 1
            self.stats["rate_limited"] += 1
            return JSONResponse(RATE_LIMITED, 500)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token in self._expired:
            return JSONResponse(EXPIRED, 500)
        if token not in self._tokens or not self._keys_ok(
            request.headers.get("appkey", ""), request.headers.get("appsecret", "")
        ):
            return JSONResponse(INVALID, 500)
        return None

    async def _vi_status(self, request: Request) -> JSONResponse:
        if refused := self._refused(request):
            return refused
        token = request.headers["authorization"]
        if request.headers.get("tr_cont") == "N" and token in self._pages:
            rows, page = self._pages[token]
            page += 1
        else:
            rows, page = self.feed.vi_status(self.now_us()), 0
        self._pages[token] = (rows, page)
        chunk = rows[page * self.page_size : (page + 1) * self.page_size]
        more = (page + 1) * self.page_size < len(rows)
        return JSONResponse(vi_status_response(chunk), headers={"tr_cont": "M" if more else "D"})

    def _venue(self, code: str) -> Venue:
        if code not in self._venues:
            inst = pq.read_table(self.raw / "instruments.parquet").to_pylist()
            row = next(r for r in inst if r["stock_code"] == code and r["date"] == self.day)
            self._venues[code] = Venue(
                load_tape(self.raw, code, StockDay.from_instrument(row)), self.execution
            )
        return self._venues[code]

    async def _order_cash(self, request: Request) -> JSONResponse:
        if refused := self._refused(request):
            return refused
        body = await request.json()
        cano, product = self._keys[2].split("-")
        paper, side = self._keys[3], BUY if request.headers.get("tr_id", "")[-2:] == "2U" else -1
        if request.headers.get("tr_id") != orders.ORDER_TR[(paper, side)] or (
            body["CANO"],
            body["ACNT_PRDT_CD"],
        ) != (cano, product):
            return JSONResponse(
                {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": "없는 서비스 코드 또는 계좌입니다."}
            )
        if body["PDNO"] not in self.feed.codes:
            return JSONResponse(
                {"rt_cd": "1", "msg_cd": "FAKE0001", "msg1": f"stock {body['PDNO']} is not replayed"}
            )
        limit = body["ORD_DVSN"] == orders.ORD_DVSN_LIMIT
        req = OrderRequest(
            body["PDNO"],
            side,
            int(body["ORD_QTY"]),
            OrderType.LIMIT if limit else OrderType.MARKET,
            int(body["ORD_UNPR"]) if limit else None,
        )
        venue = self._venue(req.stock_code)
        if reason := venue.check(req):
            return JSONResponse({"rt_cd": "1", "msg_cd": "FAKE0002", "msg1": reason})
        now = self.now_us()
        order = new_order(req, now, self.execution)
        placed = _Placed(order, f"{len(self._orders) + 1:010d}", krx.hhmmss(now), venue.arrive(order))
        self._orders.append(placed)
        self.stats["orders"] += 1
        if self._reply_delay:
            delay, self._reply_delay = self._reply_delay, 0.0
            await asyncio.sleep(delay)
        output = {"KRX_FWDG_ORD_ORGNO": "91252", "ODNO": placed.odno, "ORD_TMD": placed.ord_tmd}
        return JSONResponse(
            {"rt_cd": "0", "msg_cd": "APBK0013", "msg1": "주문 전송 완료 되었습니다.", "output": output}
        )

    async def _cancel(self, request: Request) -> JSONResponse:
        """주식주문(정정취소), cancels only: the order's fills up to the replay clock stand, the
        rest is cancelled."""
        if refused := self._refused(request):
            return refused
        body = await request.json()
        placed = next((p for p in self._orders if p.odno == body.get("ORGN_ODNO")), None)
        expected = orders.REVISE_CANCEL_TR[self._keys[3]]
        if request.headers.get("tr_id") != expected or body.get("RVSE_CNCL_DVSN_CD") != orders.CANCEL:
            return JSONResponse({"rt_cd": "1", "msg_cd": "FAKE0003", "msg1": "the fake serves cancels only"})
        if placed is None:
            return JSONResponse({"rt_cd": "1", "msg_cd": "FAKE0004", "msg1": "no such order"})
        self._catch_up(placed)
        if not placed.order.live:
            return JSONResponse({"rt_cd": "1", "msg_cd": "FAKE0005", "msg1": "nothing left to cancel"})
        placed.order.status = "cancelled"
        now = self.now_us()
        odno = f"{len(self._orders) + 1:010d}"
        self._orders.append(_Placed(placed.order, odno, krx.hhmmss(now), cancels=placed.odno))
        output = {"KRX_FWDG_ORD_ORGNO": "91252", "ODNO": self._orders[-1].odno, "ORD_TMD": krx.hhmmss(now)}
        return JSONResponse(
            {"rt_cd": "0", "msg_cd": "APBK0013", "msg1": "주문 전송 완료 되었습니다.", "output": output}
        )

    def _catch_up(self, p: _Placed) -> None:
        """A resting order's fills as the replay clock has passed them."""
        venue = self._venue(p.order.request.stock_code)
        while pending := venue.next_fill(p.order, self.now_us()):
            p.fills.extend(venue.take(pending))

    async def _daily_orders(self, request: Request) -> JSONResponse:
        if refused := self._refused(request):
            return refused
        rows = []
        for p in reversed(self._orders):  # 역순: newest first
            if not p.cancels:
                self._catch_up(p)  # resting orders fill as the clock passes
            rows.append(_inquiry_row(p, self.day))
        return JSONResponse(
            {
                "rt_cd": "0",
                "msg_cd": "KIOK0001",
                "msg1": "조회가 완료되었습니다",
                "output1": rows,
                "output2": {},
            },
            headers={"tr_cont": "D"},
        )


def _inquiry_row(p: _Placed, day: dt.date) -> dict:
    req, filled = p.order.request, sum(f.qty for f in p.fills)
    amount = sum(f.amount for f in p.fills)
    return {
        "ord_dt": day.strftime("%Y%m%d"),
        "odno": p.odno,
        "orgn_odno": p.cancels,
        "sll_buy_dvsn_cd": "02" if req.side == BUY else "01",
        "pdno": req.stock_code,
        "ord_qty": str(req.qty),
        "ord_unpr": str(req.limit_price or 0),
        "ord_tmd": p.ord_tmd,
        "tot_ccld_qty": str(filled),
        "avg_prvs": f"{amount / filled:.4f}" if filled else "0",
        "tot_ccld_amt": str(amount),
        "rmn_qty": str(p.order.remaining if p.order.live and not p.cancels else 0),
        "cncl_yn": "Y" if p.order.status == "cancelled" else "N",
    }
