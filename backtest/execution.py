"""The KRX execution model: our orders against a recorded market (a :class:`~backtest.tape.Tape`).
One implementation; :mod:`backtest.runner` drives it for the backtester, the RL environment and the
live executor's simulated broker alike.

As hftbacktest does it, what we see and what the exchange does are kept apart: an order reaches the
exchange after its entry latency (``backtest.latency``) and meets the market of that exchange time;
what happens to it comes back after the response latency. At the exchange (``backtest.matching``):
- in continuous trading a marketable order walks the book the market showed at its arrival, level
  by level (never a better price than a level shows, never more than it shows less what we already
  took from it, never through a VI band); where the last row brought no book (a trade, the uncross
  that ended an auction) the book is unknown: a market or day order waits for the next book shown,
  an IOC order is cancelled. What is left of a market or IOC order is cancelled, of a limit order
  rests at its price;
- a resting order queues behind the size displayed at its price when it arrives, and advances on
  trades at its price (a trade through its price fills it); a fall in the displayed size moves it
  forward only as far as the size left (risk-averse, the default) or, with the probabilistic model,
  by the share of cancellations that were ahead of it (hftbacktest's power-law model);
- while a call auction runs (a VI, the opening or the closing call) nothing fills: the order joins
  the auction and fills at its uncross, recomputed with our order in it where the last indicative
  book explains the print, else at the printed price when ours is strictly better, at most the
  printed volume;
- limit prices must be on the tick grid and inside the daily limits; costs are brokerage on both
  sides and the sell tax of the settlement date (``market.krx.costs``), each truncated to whole won.

Our orders do not change the recorded market beyond the liquidity they take: a small retail trader.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass, replace
from enum import StrEnum

from backtest.latency import ConstantLatency, KisPacing, LatencyModel
from backtest.matching import (
    BUY,
    NO_LIMIT,
    SELL,
    UNCROSS,
    Footprint,
    auction_fill,
    own_side,
    scan_resting,
    walk,
)
from backtest.tape import PHASE_AUCTION, PHASE_CLOSED, PHASE_CONTINUOUS, Tape
from market import krx

__all__ = ["BUY", "NO_LIMIT", "SELL"]


class OrderType(StrEnum):
    MARKET = "market"  # 시장가
    LIMIT = "limit"  # 지정가


class TimeInForce(StrEnum):
    DAY = "day"  # rests until filled, cancelled or the session ends
    IOC = "ioc"  # 즉시체결 잔량취소


class QueueModel(StrEnum):
    RISK_AVERSE = "risk_averse"
    PROBABILISTIC = "probabilistic"


@dataclass(frozen=True)
class ExecutionConfig:
    """Latencies each way (constants, or ``latency``: a model drawn per order), KIS's REST pacing
    where the broker is KIS (``pacing``), the queue model and the cost model."""

    entry_latency_us: int = 30_000
    response_latency_us: int = 30_000
    queue_model: QueueModel = QueueModel.RISK_AVERSE
    queue_power: float = 2.0  # f(x) = x^n of the probabilistic queue model
    brokerage_rate: float = krx.DEFAULT_BROKERAGE_RATE
    latency: LatencyModel | None = None
    pacing: KisPacing | None = None
    seed: int = 0  # of the latency draws

    def zero_latency(self) -> ExecutionConfig:
        return replace(self, entry_latency_us=0, response_latency_us=0, latency=None, pacing=None)

    def latency_model(self) -> LatencyModel:
        return self.latency or ConstantLatency(self.entry_latency_us, self.response_latency_us)

    def describe(self) -> str:
        text = self.latency_model().describe()
        return text + (f"; {self.pacing.describe()}" if self.pacing else "")


@dataclass(frozen=True)
class OrderRequest:
    """What a strategy asks for; the broker (simulated or KIS) turns it into an :class:`Order`."""

    stock_code: str
    side: int
    qty: int
    order_type: OrderType = OrderType.MARKET
    limit_price: int | None = None
    tif: TimeInForce = TimeInForce.DAY
    reason: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class CancelRequest:
    client_id: int
    reason: str = ""


@dataclass
class Order:
    client_id: int
    request: OrderRequest
    sent_ts: int
    arrival_ts: int
    remaining: int
    # sent -> waiting (for a book) | working | auction -> filled | cancelled | rejected
    status: str = "sent"
    reject_reason: str = ""
    cursor: int = -1  # the last tape row the exchange has applied to it
    queue_ahead: float = -1.0  # shares ahead at its price (-1: its price is not displayed yet)
    level_qty: float = -1.0  # displayed size at its price when last seen
    crossed: bool = False  # the other side showed our price or better at the last row seen

    @property
    def live(self) -> bool:
        return self.status in ("sent", "waiting", "working", "auction")

    @property
    def limit(self) -> int:
        return NO_LIMIT if self.request.limit_price is None else int(self.request.limit_price)


@dataclass(frozen=True)
class Fill:
    client_id: int
    event_id: str
    stock_code: str
    side: int
    qty: int
    price: int
    order_ts: int  # when we sent the order
    fill_ts: int  # when the exchange filled it
    ack_ts: int  # when we learn of it
    brokerage: int
    tax: int
    reason: str
    liquidity: str  # taker | maker | auction

    @property
    def amount(self) -> int:
        return self.qty * self.price

    @property
    def cash_flow(self) -> int:
        """Cash in (+) or out (-) of the account, costs included."""
        return -self.side * self.amount - self.brokerage - self.tax


def fill_costs(side: int, amount: int, market: str, day: dt.date, brokerage_rate: float) -> tuple[int, int]:
    """(brokerage, sell tax) in whole won for a fill of ``amount`` KRW traded on ``day``."""
    brokerage = _won(amount * brokerage_rate)
    tax = _won(amount * krx.sell_tax_rate(market, day)) if side == SELL else 0
    return brokerage, tax


def _won(krw: float) -> int:
    """Truncated to whole won; rounded first so that 3,120,000 x 0.00015 is 468, not 467.99."""
    return math.floor(round(krw, 6))


@dataclass(frozen=True)
class PendingFill:
    """What :meth:`Venue.next_fill` found for an order at ``row`` (exchange time ``ts``); nothing
    changes until the caller :meth:`Venue.take` s it (a cancel may reach the exchange first).
    ``qty`` 0: the order meets its end there without a fill (``reason`` says why); ``walk``: it
    meets a shown book there and walks it when taken."""

    order: Order
    row: int
    ts: int
    qty: int
    price: int
    queue_ahead: float
    level_qty: float
    crossed: bool
    liquidity: str = "maker"
    walk: bool = False
    reason: str = ""


class Venue:
    """The exchange side of one stock-day: accepts orders, says when and how they fill. It keeps
    the liquidity our orders took (:class:`~backtest.matching.Footprint`). ``tape`` may be swapped
    for a longer one of the same day (the live feed's growing tape)."""

    def __init__(self, tape: Tape, config: ExecutionConfig) -> None:
        self.tape = tape
        self.config = config
        self._probabilistic = config.queue_model == QueueModel.PROBABILISTIC
        self.footprint = Footprint()

    def check(self, request: OrderRequest) -> str:
        """Why the exchange would refuse ``request`` ("" if it would not)."""
        if request.qty <= 0:
            return f"quantity must be positive, got {request.qty}"
        if request.order_type == OrderType.MARKET:
            return "" if request.limit_price is None else "a market order has no limit price"
        p = request.limit_price
        if p is None:
            return "a limit order needs a limit price"
        t = self.tape
        if not t.lower_limit <= p <= t.upper_limit:
            return f"limit price {p:,} is outside the daily limits {t.lower_limit:,}-{t.upper_limit:,}"
        if not krx.is_on_grid(int(p), t.market, t.day):
            return f"limit price {p:,} is off the {t.market} tick grid"
        return ""

    def fill(self, order: Order, qty: int, price: int, ts: int, ack_ts: int, liquidity: str) -> Fill:
        side = order.request.side
        brokerage, tax = fill_costs(
            side, qty * price, self.tape.market, self.tape.day, self.config.brokerage_rate
        )
        order.remaining -= qty
        if order.remaining == 0:
            order.status = "filled"
        r = order.request
        return Fill(
            order.client_id, r.event_id, r.stock_code, side, qty, price, order.sent_ts, ts, ack_ts,
            brokerage, tax, r.reason, liquidity,
        )  # fmt: skip

    def arrive(self, order: Order, response_us: int | None = None) -> list[Fill]:
        """The order reaches the exchange: fills at once (walking the shown book), joins the
        auction, waits for a book, rests, or is cancelled or refused (``order.reject_reason`` says
        why). ``response_us``: how long its fills take to come back (the config's constant if None)."""
        response_us = self.config.response_latency_us if response_us is None else response_us
        t = self.tape
        i = t.index_at(order.arrival_ts)
        order.cursor = i
        if i < 0 or t.phase[i] == PHASE_CLOSED:
            order.status, order.reject_reason = "rejected", "the market is closed"
            return []
        if t.phase[i] == PHASE_AUCTION:
            order.status = "auction"
            return []
        if t.book[i] < 0:  # the market's book right now is not known: never fill on a stale one
            if order.request.tif == TimeInForce.IOC:
                order.status, order.reject_reason = "cancelled", "IOC: the book at its arrival is unknown"
            else:
                order.status = "waiting"
            return []
        return self._walk(order, i, order.arrival_ts, order.arrival_ts + response_us)

    def _walk(self, order: Order, i: int, ts: int, ack_ts: int) -> list[Fill]:
        r = order.request
        taken, why = walk(self.tape, i, r.side, order.limit, order.remaining, self.footprint)
        fills = [self.fill(order, q, p, ts, ack_ts, "taker") for p, q in taken]
        if order.remaining and (r.order_type == OrderType.MARKET or r.tif == TimeInForce.IOC):
            order.status = "cancelled"
            order.reject_reason = why or "nothing more at its price"
        elif order.remaining:
            order.status = "working"
            self._queue_on_arrival(order, i)
        return fills

    def _queue_on_arrival(self, order: Order, i: int) -> None:
        t, side = self.tape, order.request.side
        b = int(t.book[i])
        px_plane, qty_plane = own_side(side)
        px, qty = t.books[b, px_plane], t.books[b, qty_plane]
        hit = (px == order.limit).nonzero()[0]
        if len(hit):
            order.queue_ahead = order.level_qty = float(qty[hit[0]])
        elif px[0] <= 0 or (px[0] < order.limit if side == BUY else px[0] > order.limit):
            order.queue_ahead = order.level_qty = 0.0  # the best price on its side now
        opp = t.books[b, 2 if side == BUY else 0, 0]
        order.crossed = bool(opp > 0 and (opp <= order.limit if side == BUY else opp >= order.limit))

    def next_fill(self, order: Order, until_ts: int) -> PendingFill | None:
        """What next happens to the order at or before exchange time ``until_ts``, or None."""
        if order.status not in ("waiting", "working", "auction"):
            return None
        t = self.tape
        end = t.index_at(until_ts) + 1
        if order.status == "waiting":
            return self._next_book(order, end)
        start = order.cursor + 1
        ahead, level, crossed = order.queue_ahead, order.level_qty, order.crossed
        side = order.request.side
        while start < end:
            row, qty, price, ahead, level, crossed = scan_resting(
                t.kind, t.price, t.volume, t.side, t.phase, t.book, t.books, start, end, side,
                order.limit, order.remaining, ahead, level, crossed, self._probabilistic,
                self.config.queue_power,
            )  # fmt: skip
            if row < 0:
                return None
            if qty != UNCROSS:
                return PendingFill(
                    order, int(row), int(t.ts[row]), int(qty), int(price), ahead, level, crossed
                )
            qty, price, how = auction_fill(t, int(row), side, order.limit, order.remaining)
            if qty > 0:
                return PendingFill(
                    order, int(row), int(t.ts[row]), qty, price, -1.0, -1.0, False, "auction", reason=how
                )
            if order.limit == NO_LIMIT:  # a market order the auction did not match
                why = "the auction matched nothing for it"
                return PendingFill(order, int(row), int(t.ts[row]), 0, 0, -1.0, -1.0, False, reason=why)
            start = int(row) + 1  # a limit order left over rests on in continuous trading
        return None

    def _next_book(self, order: Order, end: int) -> PendingFill | None:
        """A waiting order's next book: it walks the first one shown in continuous trading, or
        joins the auction that starts first, or ends with the session."""
        t = self.tape
        for i in range(order.cursor + 1, end):
            if t.phase[i] != PHASE_CONTINUOUS or t.book[i] >= 0:
                return PendingFill(order, i, int(t.ts[i]), 0, 0, -1.0, -1.0, False, walk=True)
        return None

    def take(self, pending: PendingFill, response_us: int | None = None) -> list[Fill]:
        """Apply what :meth:`next_fill` found (its fills come back ``response_us`` later: the
        config's constant if None)."""
        order, t, row = pending.order, self.tape, pending.row
        order.cursor = row
        ack = pending.ts + (self.config.response_latency_us if response_us is None else response_us)
        if pending.walk:
            if t.phase[row] == PHASE_AUCTION:
                order.status = "auction"
                return []
            if t.phase[row] == PHASE_CLOSED:
                order.status, order.reject_reason = "cancelled", "the session ended before a book was shown"
                return []
            return self._walk(order, row, pending.ts, ack)
        order.queue_ahead, order.level_qty, order.crossed = (
            pending.queue_ahead,
            pending.level_qty,
            pending.crossed,
        )
        if pending.qty == 0:
            order.status, order.reject_reason = "cancelled", pending.reason
            return []
        fill = self.fill(order, pending.qty, pending.price, pending.ts, ack, pending.liquidity)
        if pending.liquidity == "auction" and order.remaining:
            if order.request.order_type == OrderType.MARKET:
                order.status, order.reject_reason = "cancelled", "the auction matched less than asked"
            else:
                order.status = "working"  # the rest rests; its queue is read off the next book
        elif order.remaining:
            order.status = "working"
        return [fill]


_ids = itertools.count(1)


def new_order(request: OrderRequest, sent_ts: int, config: ExecutionConfig) -> Order:
    """An order sent at ``sent_ts`` with the config's constant entry latency (a
    :class:`~backtest.runner.ExchangeLoop` draws its latencies from the model instead)."""
    return Order(next(_ids), request, sent_ts, sent_ts + config.entry_latency_us, request.qty)
