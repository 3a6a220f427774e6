"""The live executor's brokers: where its orders go and what comes back, as events.

Two implementations of one interface (:class:`Broker`), so the executor never knows which runs:
- :class:`SimBroker`: paper trading on the live feed with backtest's one exchange loop
  (``backtest.runner``), the same the backtester and the RL environment drive. Each stock's
  :class:`~backtest.execution.Venue` matches against its :class:`~backtest.tape.LiveTape` (the rows
  received so far, in exchange time): an order's arrival, and every later step of it, waits until
  the feed has delivered a row past that moment; what happens comes back after the response
  latency, in local time. Its account lives in the process: after a restart it starts from what the
  journal holds, and an order in flight at the crash is reported lost.
- :class:`KisBroker`: a KIS account (paper or real) through :class:`~market.kis.orders.KisOrders`.
  Orders go out on their own tasks (the executor never waits on REST); fills are read from the
  daily order inquiry while orders are open; cancels go through 주식주문(정정취소); after a
  restart, orders the journal says were being
  sent are looked for at KIS (by stock, side, quantity, price and time, as KisOrders recovers a
  lost reply) and adopted, or reported lost: never sent a second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from backtest.execution import ExecutionConfig, Fill, OrderRequest, OrderType, Venue, fill_costs
from backtest.runner import ExchangeLoop
from backtest.tape import LiveTape
from market import krx
from market.kis.client import KisError
from market.kis.orders import KisOrders, OrderAck, OrderStatus
from serving.journal import JournaledOrder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ack:
    client_id: int
    broker_id: str
    ts: int


@dataclass(frozen=True)
class Ended:
    """The order is over without (more) fills: ``state`` rejected, cancelled or lost."""

    client_id: int
    state: str
    reason: str
    ts: int


BrokerEvent = Ack | Ended | Fill


class Broker(Protocol):
    name: str

    def submit(self, client_id: int, request: OrderRequest, now_us: int) -> None:
        """Hand the order over; what becomes of it comes back through :meth:`poll`."""

    def cancel(self, client_id: int, now_us: int) -> None: ...

    def on_row(self, stock_code: str, ts_us: int) -> None:
        """The feed delivered a row of ``stock_code`` (the simulated exchange moves on)."""

    async def poll(self, now_us: int) -> list[BrokerEvent]: ...

    async def reconcile(self, open_orders: list[JournaledOrder], now_us: int) -> list[BrokerEvent]:
        """After a restart: what became of the orders the journal left open."""

    async def close(self) -> None: ...


class SimBroker:
    name = "sim"

    def __init__(
        self, tapes: Callable[[str], LiveTape | None], config: ExecutionConfig, capital: float
    ) -> None:
        self.tapes, self.config = tapes, config
        self._venues: dict[str, Venue] = {}
        self.loop = ExchangeLoop(self._venue, config, capital, horizon=self._horizon)
        self.account = self.loop.account
        self._refused: list[tuple[int, Ended]] = []

    def _venue(self, stock_code: str, day) -> Venue | None:
        live = self.tapes(stock_code)
        if live is None or not len(live) or live.day != day:
            return None
        venue = self._venues.get(stock_code)
        if venue is None or venue.tape.day != day:
            venue = self._venues[stock_code] = Venue(live.tape(), self.config)
        return venue

    def _horizon(self, stock_code: str) -> int:
        """Rows up to just before the last one received are all in (more may share its time)."""
        live = self.tapes(stock_code)
        return live.last_ts - 1 if live is not None else -1

    def restore(self, fills: list[Fill]) -> None:
        """The account as the journal's fills left it (a restart)."""
        for f in fills:
            self.account.apply(f)

    def submit(self, client_id: int, request: OrderRequest, now_us: int) -> None:
        placed = self.loop.submit(request, now_us, client_id=client_id)
        if isinstance(placed, str):
            reply = now_us + self.config.response_latency_us
            self._refused.append((reply, Ended(client_id, "rejected", placed, reply)))

    def cancel(self, client_id: int, now_us: int) -> None:
        self.loop.cancel(client_id, now_us)

    def on_row(self, stock_code: str, ts_us: int) -> None:
        venue = self._venues.get(stock_code)
        live = self.tapes(stock_code)
        if venue is not None and live is not None and live.day == venue.tape.day:
            venue.tape = live.tape()  # the same arrays, grown: the venue's footprint stays
        self.loop.on_rows(stock_code)

    async def poll(self, now_us: int) -> list[BrokerEvent]:
        out: list[BrokerEvent] = [e for t, e in self._refused if t <= now_us]
        self._refused = [(t, e) for t, e in self._refused if t > now_us]
        for r in self.loop.advance(now_us):
            if r.kind == "ack":
                out.append(Ack(r.client_id, f"SIM{r.client_id}", r.ts))
            elif r.kind == "fill":
                out.append(r.fill)
            else:
                out.append(Ended(r.client_id, r.state, r.reason or r.state, r.ts))
        return out

    async def reconcile(self, open_orders: list[JournaledOrder], now_us: int) -> list[BrokerEvent]:
        # the simulated exchange lived in the crashed process: its working orders died with it
        why = "the simulated exchange restarted: the order died with it"
        return [Ended(o.client_id, "lost", why, now_us) for o in open_orders]

    async def close(self) -> None:
        return None


class KisBroker:
    """Orders through KIS (the journal's client id is the one KisOrders keys its idempotency on)."""

    def __init__(
        self,
        orders: KisOrders,
        market_of: Callable[[str], str],
        config: ExecutionConfig,
        poll_s: float = 1.0,
        name: str = "kis-paper",
    ) -> None:
        self.orders, self.market_of, self.config, self.poll_s, self.name = (
            orders, market_of, config, poll_s, name,
        )  # fmt: skip
        self._requests: dict[int, tuple[OrderRequest, int]] = {}  # client id -> (request, sent µs)
        self._odno: dict[int, str] = {}
        self._acks: dict[int, OrderAck] = {}  # what a cancel needs (the order's ODNO and KRX org no)
        self._filled: dict[int, tuple[int, float]] = {}  # client id -> (qty, average price) seen
        self._tasks: set[asyncio.Task] = set()
        self._events: list[BrokerEvent] = []
        self._last_poll = 0.0
        self._inquiry: asyncio.Task | None = None
        self._ended: set[int] = set()
        self.clock = orders.rest.market_now_us

    def submit(self, client_id: int, request: OrderRequest, now_us: int) -> None:
        self._requests[client_id] = (request, now_us)
        self._spawn(self._send(client_id, request, now_us))

    def _spawn(self, work) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, client_id: int, r: OrderRequest, now_us: int) -> None:
        price = r.limit_price if r.order_type == OrderType.LIMIT else None
        try:
            ack = await self.orders.order_cash(r.stock_code, r.side, r.qty, price, client_id=str(client_id))
        except (KisError, ValueError) as exc:
            self._events.append(Ended(client_id, "rejected", f"KIS refused the order: {exc}", now_us))
            return
        except Exception as exc:  # a transport failure after every retry: the order may be out
            log.warning(
                "order %d: no answer from KIS (%s); left to the inquiry", client_id, type(exc).__name__
            )
            return
        self._acks[client_id] = ack
        self._odno[client_id] = ack.odno
        self._events.append(Ack(client_id, ack.odno, self.clock()))  # the reply's time: the round trip

    def cancel(self, client_id: int, now_us: int) -> None:
        """Cancel what is left at KIS (주식주문(정정취소)); the inquiry then shows the order over."""
        self._spawn(self._cancel(client_id))

    async def _cancel(self, client_id: int) -> None:
        ack = self._acks.get(client_id) or (
            OrderAck(str(client_id), self._odno[client_id], "", "") if client_id in self._odno else None
        )
        if ack is None:
            log.warning("order %d: not acknowledged yet, nothing to cancel at KIS", client_id)
            return
        try:
            await self.orders.cancel(ack)
        except (KisError, httpx.HTTPError) as exc:
            log.warning("order %d: the cancel failed: %s", client_id, exc)
        self._last_poll = 0.0  # ask the inquiry at once

    def on_row(self, stock_code: str, ts_us: int) -> None:
        return None

    def _open(self) -> list[int]:
        done = self._ended | {e.client_id for e in self._events if isinstance(e, Ended)}
        return [
            c
            for c, (r, _) in self._requests.items()
            if self._filled.get(c, (0, 0))[0] < r.qty and c not in done
        ]

    async def poll(self, now_us: int) -> list[BrokerEvent]:
        """What came back so far; the order inquiry runs on its own task (never in the executor's
        way), every ``poll_s`` while orders are open."""
        busy = self._inquiry is not None and not self._inquiry.done()
        if self._open() and not busy and time.monotonic() - self._last_poll >= self.poll_s:
            self._last_poll = time.monotonic()
            self._inquiry = self._spawn(self._inquire(now_us))
        out, self._events = self._events, []
        return out

    async def _inquire(self, now_us: int) -> None:
        try:
            rows = {row.odno: row for row in await self.orders.daily_orders()}
        except (KisError, httpx.HTTPError, OSError) as exc:
            log.warning("order inquiry failed: %s", type(exc).__name__)
            return
        for cid, odno in list(self._odno.items()):
            if odno in rows:
                self._fills_from(cid, rows[odno], self.clock())

    def _fills_from(self, cid: int, row: OrderStatus, now_us: int) -> None:
        """The fills a row of the order inquiry shows beyond those already reported, and the
        order's end when KIS has nothing left of it unfilled (cancelled, or a market order's rest)."""
        r, sent = self._requests[cid]
        qty0, avg0 = self._filled.get(cid, (0, 0.0))
        if row.filled_qty > qty0:
            self._fill(cid, r, sent, row, qty0, avg0, now_us)
        if row.remaining == 0 and row.filled_qty < r.qty and cid not in self._ended:
            self._ended.add(cid)
            why = f"KIS: {r.qty - row.filled_qty} of {r.qty} not filled, nothing left working"
            self._events.append(Ended(cid, "cancelled", why, now_us))

    def _fill(
        self, cid: int, r: OrderRequest, sent: int, row: OrderStatus, qty0: int, avg0: float, now_us: int
    ) -> None:
        qty = row.filled_qty - qty0
        price = round((row.avg_price * row.filled_qty - avg0 * qty0) / qty)
        self._filled[cid] = (row.filled_qty, row.avg_price)
        market = self.market_of(r.stock_code)
        brokerage, tax = fill_costs(
            r.side, qty * price, market, krx.seoul_date(now_us), self.config.brokerage_rate
        )
        self._events.append(
            Fill(
                cid,
                r.event_id,
                r.stock_code,
                r.side,
                qty,
                price,
                sent,
                now_us,
                now_us,
                brokerage,
                tax,
                r.reason,
                "kis",
            )
        )

    async def reconcile(self, open_orders: list[JournaledOrder], now_us: int) -> list[BrokerEvent]:
        rows = await self.orders.daily_orders()
        owned = {o.broker_id for o in open_orders if o.broker_id}
        for o in open_orders:
            self._requests[o.client_id] = (o.request, o.sent_ts)
            if o.broker_id:
                self._odno[o.client_id] = o.broker_id
                # the journal's fills are the ones already counted
                self._filled[o.client_id] = (o.filled, o.filled_amount / o.filled if o.filled else 0.0)
                continue
            r = o.request
            found = next(
                (
                    row
                    for row in rows
                    if row.odno not in owned
                    and not row.original
                    and (row.stock_code, row.side, row.qty) == (r.stock_code, r.side, r.qty)
                    and (r.limit_price is None or row.price == r.limit_price)
                    and row.ord_tmd >= krx.hhmmss(o.sent_ts)
                ),
                None,
            )
            if found is None:
                self._events.append(
                    Ended(o.client_id, "lost", "not at KIS after the restart: never sent", now_us)
                )
                continue
            owned.add(found.odno)
            self._odno[o.client_id] = found.odno
            self._events.append(Ack(o.client_id, found.odno, now_us))
        for cid, odno in self._odno.items():
            row = next((row for row in rows if row.odno == odno), None)
            if row is not None:
                self._fills_from(cid, row, now_us)
        out, self._events = self._events, []
        return out

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
