"""The one exchange loop: our orders at the simulated exchange (``backtest.execution``) and what we
hear of them, in time order, with one account. The backtester, the RL environment and the live
executor's simulated broker each drive it through a thin adapter (nautilus_trader runs one kernel
under backtest and live the same way), so the same orders get the same fills and the same P&L
whichever runs them.

Two sides, two clocks:
- the exchange side, in exchange time: an order arrives after its entry latency (paced by KIS's
  REST budget where ``ExecutionConfig.pacing`` says so), walks, rests, joins an auction, fills,
  is cancelled;
- the local side, in local time: what comes back after the response latency (the order's
  acknowledgement, each fill, its end), or by the KIS order inquiry / fill notice. The account
  moves when a fill is heard of (a strategy never holds what it has not been told of); a lot's
  holding clock starts at its fill.

:meth:`ExchangeLoop.advance` runs everything due up to a time and returns the :class:`Report` s
heard by then. A stock's exchange events wait while its tape does not yet reach them (the live
feed's growing tape): :meth:`ExchangeLoop.on_rows` lets them run once it does.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from backtest.account import Account
from backtest.execution import SELL, ExecutionConfig, Fill, Order, OrderRequest, OrderType, PendingFill, Venue
from backtest.tape import Tape
from market import krx

# at one instant: the exchange first (arrivals, fills, cancels, inquiries served), then what we hear
_ARRIVE, _FILL, _CANCEL, _INQUIRY, _REPORT, _POLL = range(6)
NEVER = 2**62


@dataclass(frozen=True)
class Report:
    """What the local side hears at local time ``ts``: an order's acknowledgement (``ack``), a
    fill, or its end (``end``: ``state`` cancelled or rejected, ``reason`` why)."""

    ts: int
    client_id: int
    kind: str
    fill: Fill | None = None
    state: str = ""
    reason: str = ""


VenueSource = Callable[[str, dt.date], Venue | None]


class ExchangeLoop:
    """``venues(stock_code, day)``: the stock-day's :class:`Venue` (None: no market data).
    ``horizon(stock_code)``: the exchange time up to which its tape is complete (recorded tapes:
    all of it)."""

    def __init__(
        self,
        venues: VenueSource,
        config: ExecutionConfig,
        capital: float,
        horizon: Callable[[str], int] | None = None,
    ) -> None:
        self.venues, self.config = venues, config
        self.horizon = horizon or (lambda code: NEVER)
        self.account = Account(capital, brokerage_rate=config.brokerage_rate)
        self.latency = config.latency_model().sampler(config.seed)
        self.orders: dict[int, Order] = {}
        self.open: dict[int, Order] = {}  # not yet heard to be over
        self.reserved: dict[int, float] = {}
        self.sell_pending: dict[str, int] = {}
        self.filled_heard: dict[int, int] = {}
        self._venue_of: dict[int, Venue] = {}
        self._heap: list = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._parked: dict[str, list] = {}
        self._idle: dict[str, set[int]] = {}  # resting orders whose next fill lies past the horizon
        self._pending: dict[int, PendingFill] = {}
        self._rest_free = 0  # the next free KIS REST slot (local time)
        self._unheard: list[tuple[int, Report]] = []  # (exchange time, what the inquiry will report)
        self._polling = False
        self._last_heard: dict[int, int] = {}  # an order's reports are heard in the order they happen

    # -- the local side -----------------------------------------------------------------------
    def position(self, stock_code: str) -> int:
        return self.account.positions.get(stock_code, 0)

    def working(self, event_id: str) -> list[int]:
        return sorted(c for c, o in self.open.items() if o.request.event_id == event_id)

    def venue(self, stock_code: str, now: int) -> Venue | None:
        venue = self.venues(stock_code, krx.seoul_date(now))
        if venue is not None:
            self.account.markets[stock_code] = venue.tape.market
        return venue

    def submit(self, request: OrderRequest, now: int, client_id: int | None = None) -> Order | str:
        """Send ``request`` at local time ``now``: the order, or why it is refused at once (the
        exchange's checks, no short selling, cash for a buy)."""
        venue = self.venue(request.stock_code, now)
        if venue is None:
            return f"no market data for {request.stock_code}"
        reason = venue.check(request)
        cost = 0.0
        if not reason:
            reason, cost = self._affordable(request, venue.tape, now)
        if reason:
            return reason
        cid = next(self._ids) if client_id is None else client_id
        sent = self._rest_slot(now)
        order = Order(cid, request, now, sent + self.latency.entry(), request.qty)
        self.orders[cid], self.open[cid], self._venue_of[cid] = order, order, venue
        if request.side == SELL:
            self.sell_pending[request.stock_code] = self.sell_pending.get(request.stock_code, 0) + request.qty
        else:
            self.reserved[cid] = cost
        self._push(order.arrival_ts, _ARRIVE, order)
        self._start_polling(sent)
        return order

    def _affordable(self, r: OrderRequest, tape: Tape, now: int) -> tuple[str, float]:
        """(why not, cash to hold back): no short selling; a buy's cost at its limit, else the ask
        shown now (else the last trade, else the upper limit), brokerage included."""
        if r.side == SELL:
            held = self.position(r.stock_code) - self.sell_pending.get(r.stock_code, 0)
            why = (
                f"no short selling: selling {r.qty} of {r.stock_code}, holding {held}" if r.qty > held else ""
            )
            return why, 0.0
        i = tape.seen_at(now)
        ask = tape.quotes(i)[1] if i >= 0 else 0
        last = int(tape.last_price[i]) if i >= 0 else 0
        price = r.limit_price if r.order_type == OrderType.LIMIT else (ask or last or tape.upper_limit)
        cost = r.qty * float(price) * (1 + self.config.brokerage_rate)
        if cost > self.account.cash - sum(self.reserved.values()):
            return f"not enough cash for {r.qty} x {price:,} of {r.stock_code}", 0.0
        return "", cost

    def cancel(self, client_id: int, now: int) -> None:
        """Ask the exchange to cancel what is left (it may fill before the cancel gets there)."""
        if client_id in self.open:
            self._push(self._rest_slot(now) + self.latency.entry(), _CANCEL, client_id)

    def _rest_slot(self, now: int) -> int:
        """When a REST call asked at ``now`` goes out (KIS's pacing; at once without it)."""
        if self.config.pacing is None:
            return now
        sent = max(now, self._rest_free)
        self._rest_free = sent + self.config.pacing.interval_us
        return sent

    def _start_polling(self, now: int) -> None:
        pacing = self.config.pacing
        if pacing is not None and pacing.fills_by == "inquiry" and not self._polling:
            self._polling = True
            self._push(now + pacing.poll_us, _POLL, None)

    # -- the loop -----------------------------------------------------------------------------
    def _push(self, ts: int, kind: int, payload: object) -> None:
        heapq.heappush(self._heap, (ts, kind, next(self._seq), payload))

    def next_time(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def advance(self, until: int) -> list[Report]:
        """Everything due at or before ``until``; the reports heard by then, in time order."""
        heard: list[Report] = []
        while self._heap and self._heap[0][0] <= until:
            ts, kind, _, payload = heapq.heappop(self._heap)
            code = self._stock(kind, payload)
            if code is not None and ts > self.horizon(code):  # its tape does not reach here yet
                self._parked.setdefault(code, []).append((ts, kind, payload))
                continue
            if kind == _ARRIVE:
                self._arrive(payload)
            elif kind == _FILL:
                self._fill(payload)
            elif kind == _CANCEL:
                self._cancel(ts, payload)
            elif kind == _POLL:
                self._poll(ts)
            elif kind == _INQUIRY:
                self._inquiry(ts)
            else:
                heard.append(self._hear(payload))
        return heard

    def on_rows(self, stock_code: str) -> None:
        """The stock's tape grew: what waited for it may run."""
        for ts, kind, payload in self._parked.pop(stock_code, []):
            self._push(ts, kind, payload)
        for cid in self._idle.pop(stock_code, set()):
            order = self.orders[cid]
            if order.live:
                self._follow(order)

    def _stock(self, kind: int, payload) -> str | None:
        if kind == _ARRIVE:
            return payload.request.stock_code
        if kind == _FILL:
            return payload.order.request.stock_code
        if kind == _CANCEL:
            return self.orders[payload].request.stock_code
        return None

    def _report(self, report: Report, exchange_ts: int) -> None:
        """``report`` is heard at its time, or (fills and ends under KIS's order inquiry) when the
        first inquiry served after ``exchange_ts`` comes back."""
        pacing = self.config.pacing
        if pacing is not None and pacing.fills_by == "inquiry" and report.kind != "ack":
            self._unheard.append((exchange_ts, report))
            return
        ts = max(report.ts, self._last_heard.get(report.client_id, 0))
        self._last_heard[report.client_id] = ts
        self._push(ts, _REPORT, replace(report, ts=ts))

    def _out(self, order: Order, fills: list[Fill], ts: int, response: int) -> None:
        """What an exchange event at ``ts`` did to ``order``: its fills, and its end if it ended
        without filling in full."""
        for f in fills:
            self._report(Report(f.ack_ts, f.client_id, "fill", f), f.fill_ts)
        if not order.live and order.status != "filled":
            end = Report(
                ts + response, order.client_id, "end", state=order.status, reason=order.reject_reason
            )
            self._report(end, ts)

    def _arrive(self, order: Order) -> None:
        if not order.live:  # cancelled before it got here
            return
        response = self.latency.response()
        fills = self._venue_of[order.client_id].arrive(order, response)
        if order.status != "rejected":
            self._report(Report(order.arrival_ts + response, order.client_id, "ack"), order.arrival_ts)
        self._out(order, fills, order.arrival_ts, response)
        self._follow(order)

    def _follow(self, order: Order) -> None:
        venue = self._venue_of[order.client_id]
        code = order.request.stock_code
        pending = venue.next_fill(order, min(self.horizon(code), NEVER - 1))
        if pending is None:
            if order.live:
                self._idle.setdefault(code, set()).add(order.client_id)
            return
        self._pending[order.client_id] = pending
        self._push(pending.ts, _FILL, pending)

    def _fill(self, pending: PendingFill) -> None:
        order = pending.order
        if not order.live or self._pending.get(order.client_id) is not pending:
            return
        del self._pending[order.client_id]
        response = self.latency.response()
        self._out(order, self._venue_of[order.client_id].take(pending, response), pending.ts, response)
        self._follow(order)

    def _cancel(self, ts: int, client_id: int) -> None:
        order = self.orders[client_id]
        if not order.live:
            return
        before = order.status == "sent"
        order.status = "cancelled"
        order.reject_reason = "cancelled before it reached the exchange" if before else "cancelled"
        self._pending.pop(client_id, None)
        self._out(order, [], ts, self.latency.response())

    def _poll(self, ts: int) -> None:
        """The order inquiry goes out (a REST slot); it is served at the exchange an entry later."""
        sent = self._rest_slot(ts)
        self._push(sent + self.latency.entry(), _INQUIRY, None)

    def _inquiry(self, ts: int) -> None:
        """The inquiry served at exchange time ``ts`` reports every fill and end up to then."""
        back = ts + self.latency.response()
        due = [r for t, r in self._unheard if t <= ts]
        self._unheard = [(t, r) for t, r in self._unheard if t > ts]
        for r in due:
            fill = replace(r.fill, ack_ts=back) if r.fill is not None else None
            self._push(back, _REPORT, replace(r, ts=back, fill=fill))
        if self.open or self._unheard:
            self._push(ts + self.config.pacing.poll_us, _POLL, None)
        else:
            self._polling = False

    def _hear(self, report: Report) -> Report:
        order = self.orders[report.client_id]
        r = order.request
        if report.kind == "fill":
            f = report.fill
            self.account.apply(f)
            self.filled_heard[order.client_id] = self.filled_heard.get(order.client_id, 0) + f.qty
            if r.side == SELL:
                self.sell_pending[r.stock_code] -= f.qty
            elif order.client_id in self.reserved:  # the cash it held back is now spent
                self.reserved[order.client_id] = max(
                    0.0, self.reserved[order.client_id] - f.amount - f.brokerage
                )
        done = report.kind == "end" or self.filled_heard.get(order.client_id, 0) >= r.qty
        if done and self.open.pop(order.client_id, None) is not None:
            self.reserved.pop(order.client_id, None)
            if r.side == SELL:
                self.sell_pending[r.stock_code] -= r.qty - self.filled_heard.get(order.client_id, 0)
        return report
