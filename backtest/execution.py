"""The KRX execution model: our orders against a recorded market (a :class:`~backtest.tape.Tape`).
One implementation, used by the backtester, the RL environment and the live executor's simulated
broker.

As hftbacktest does it, what we see and what the exchange does are kept apart: an order reaches the
exchange ``entry_latency_us`` after we send it and sees the book as it is then; its fills come back
``response_latency_us`` after they happen. At the exchange:
- in continuous trading a marketable order walks the book level by level (never a better price
  than a level shows, never more than it shows); what is left of a market or IOC order is
  cancelled, what is left of a limit order rests at its price;
- a resting order queues behind the size displayed at its price when it arrives, and advances on
  trades at its price (a trade through its price fills it); a fall in the displayed size moves it
  forward only as far as the size left (risk-averse, the default) or, with the probabilistic model,
  by the share of cancellations that were ahead of it (hftbacktest's power-law model);
- while a call auction runs (a VI, the opening or the closing call) nothing fills: the order joins
  the auction and fills at its uncross price when its price is strictly better (a market order
  always), or not at all (an order at exactly the uncross price may be the one left unfilled by
  time priority, so the default counts it unfilled); at most the uncross volume fills;
- limit prices must be on the tick grid and inside the daily limits; costs are brokerage on both
  sides and the sell tax of the settlement date (``market.krx.costs``), each truncated to whole won.

Our orders do not change the recorded market (no impact): a model of a small retail trader.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum

import numba
import numpy as np

from backtest.tape import PHASE_AUCTION, PHASE_CLOSED, Tape
from market import krx

BUY, SELL = 1, -1
NO_LIMIT = -1


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
    """Latencies as KIS REST orders see them (tens of milliseconds each way), the queue model and
    the cost model."""

    entry_latency_us: int = 30_000
    response_latency_us: int = 30_000
    queue_model: QueueModel = QueueModel.RISK_AVERSE
    queue_power: float = 2.0  # f(x) = x^n of the probabilistic queue model
    brokerage_rate: float = krx.DEFAULT_BROKERAGE_RATE

    def zero_latency(self) -> ExecutionConfig:
        return ExecutionConfig(0, 0, self.queue_model, self.queue_power, self.brokerage_rate)


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
    status: str = "sent"  # sent -> working | auction -> filled | cancelled | rejected
    reject_reason: str = ""
    cursor: int = -1  # the last tape row the exchange has applied to it
    queue_ahead: float = -1.0  # shares ahead at its price (-1: its price is not displayed yet)
    level_qty: float = -1.0  # displayed size at its price when last seen
    crossed: bool = False  # the other side showed our price or better at the last row seen

    @property
    def live(self) -> bool:
        return self.status in ("sent", "working", "auction")

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


def walk_book(
    prices: np.ndarray, sizes: np.ndarray, limit: int, qty: int, side: int
) -> list[tuple[int, int]]:
    """(price, qty) taken from the opposite side's levels (best first) by a marketable order of
    ``qty`` at ``limit`` (NO_LIMIT: a market order): each level at most what it displays."""
    out, left = [], qty
    for p, s in zip(prices.tolist(), sizes.tolist(), strict=True):
        if left == 0 or p <= 0 or s <= 0:
            break
        if limit != NO_LIMIT and (p > limit if side == BUY else p < limit):
            break
        take = min(left, s)
        out.append((p, take))
        left -= take
    return out


@numba.njit(cache=True)
def _level(px_row, price):
    for j in range(px_row.shape[0]):
        if px_row[j] == price:
            return j
    return -1


@numba.njit(cache=True)
def scan_resting(
    kind,
    price,
    volume,
    aggressor,
    phase,
    same_px,
    same_qty,
    opp_px,
    opp_qty,
    start,
    end,
    side,
    limit,
    remaining,
    queue_ahead,
    level_qty,
    crossed,
    probabilistic,
    power,
):
    """Rows ``start..end-1`` applied to a resting (or auction-joined) order of ``side`` at ``limit``
    (-1: market, auction only). Returns (row of its next fill or -1, qty, price, queue_ahead,
    level_qty, crossed) with the order's state after that row (or after ``end - 1``).

    The other side showing our price fills us only when it newly does: the recorded book keeps
    showing the levels our own order took on arrival, and they must not fill us twice."""
    for i in range(start, end):
        is_trade = kind[i] == 0
        if is_trade and aggressor[i] == 0:  # an uncross: the auction our order sat in
            p = price[i]
            better = limit == -1 or (p < limit if side == 1 else p > limit)
            queue_ahead = -1.0
            level_qty = -1.0
            crossed = False
            if better and volume[i] > 0:
                return i, min(remaining, volume[i]), p, queue_ahead, level_qty, crossed
            continue
        if phase[i] == 2 or phase[i] == 0 or limit == -1:
            continue
        if is_trade:
            through = price[i] < limit if side == 1 else price[i] > limit
            if through:
                return i, remaining, limit, 0.0, level_qty, crossed
            # a trade at our price by an aggressor on the other side eats the queue ahead of us
            # (and the displayed size, so that the book row after it is not read as cancellations)
            if price[i] == limit and aggressor[i] == -side and queue_ahead >= 0.0:
                ahead = queue_ahead
                queue_ahead = max(0.0, ahead - volume[i])
                if level_qty >= 0.0:
                    level_qty = max(0.0, level_qty - volume[i])
                if volume[i] > ahead:
                    return i, min(remaining, int(volume[i] - ahead)), limit, queue_ahead, level_qty, crossed
        best_opp = opp_px[i, 0]
        now_crossed = best_opp > 0 and (best_opp <= limit if side == 1 else best_opp >= limit)
        if now_crossed and not crossed:
            # the other side now rests at or through our price: it would have traded with us
            crossed = True
            avail = 0
            for j in range(opp_px.shape[1]):
                p = opp_px[i, j]
                if p <= 0 or (p > limit if side == 1 else p < limit):
                    break
                avail += opp_qty[i, j]
            if avail > 0:
                return i, min(remaining, avail), limit, 0.0, level_qty, crossed
        crossed = now_crossed
        j = _level(same_px[i], limit)
        if j >= 0:
            q = float(same_qty[i, j])
            if queue_ahead < 0.0:
                queue_ahead = q  # first seen: behind everything displayed
            elif probabilistic and level_qty >= 0.0 and q < level_qty:
                behind = max(level_qty - queue_ahead, 0.0)
                fa, fb = queue_ahead**power, behind**power
                share = fb / (fa + fb) if fa + fb > 0 else 0.0
                queue_ahead -= (level_qty - q) * (1.0 - share)
            queue_ahead = max(0.0, min(queue_ahead, q))
            level_qty = q
        elif same_px[i, 0] > 0 and (same_px[i, 0] < limit if side == 1 else same_px[i, 0] > limit):
            queue_ahead = 0.0  # our price is now the best on our side and shows nobody else
            level_qty = 0.0
    return -1, 0, 0, queue_ahead, level_qty, crossed


class Venue:
    """The exchange side of one stock-day: accepts orders, says when and how they fill."""

    def __init__(self, tape: Tape, config: ExecutionConfig) -> None:
        self.tape = tape
        self.config = config
        self._probabilistic = config.queue_model == QueueModel.PROBABILISTIC

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

    def _fill(self, order: Order, qty: int, price: int, ts: int, liquidity: str) -> Fill:
        side = order.request.side
        brokerage, tax = fill_costs(
            side, qty * price, self.tape.market, self.tape.day, self.config.brokerage_rate
        )
        order.remaining -= qty
        order.status = "filled" if order.remaining == 0 else "working"
        return Fill(
            order.client_id,
            order.request.event_id,
            order.request.stock_code,
            side,
            qty,
            price,
            order.sent_ts,
            ts,
            ts + self.config.response_latency_us,
            brokerage,
            tax,
            order.request.reason,
            liquidity,
        )

    def arrive(self, order: Order) -> list[Fill]:
        """The order reaches the exchange: fills at once (walking the book), joins the auction,
        rests, or is cancelled or refused."""
        t, r = self.tape, order.request
        i = t.index_at(order.arrival_ts)
        order.cursor = i
        if i < 0 or t.phase[i] == PHASE_CLOSED:
            order.status, order.reject_reason = "rejected", "the market is closed"
            return []
        if t.phase[i] == PHASE_AUCTION:
            order.status = "auction"
            return []
        opp_px, opp_qty = (t.ask_px[i], t.ask_qty[i]) if r.side == BUY else (t.bid_px[i], t.bid_qty[i])
        fills = [
            self._fill(order, q, p, order.arrival_ts, "taker")
            for p, q in walk_book(opp_px, opp_qty, order.limit, order.remaining, r.side)
        ]
        if order.remaining and (r.order_type == OrderType.MARKET or r.tif == TimeInForce.IOC):
            order.status = "cancelled"
        elif order.remaining:
            order.status = "working"
            self._queue_on_arrival(order, i)
        return fills

    def _queue_on_arrival(self, order: Order, i: int) -> None:
        t, side = self.tape, order.request.side
        px, qty = (t.bid_px[i], t.bid_qty[i]) if side == BUY else (t.ask_px[i], t.ask_qty[i])
        hit = np.flatnonzero(px == order.limit)
        if len(hit):
            order.queue_ahead = order.level_qty = float(qty[hit[0]])
        elif px[0] <= 0 or (px[0] < order.limit if side == BUY else px[0] > order.limit):
            order.queue_ahead = order.level_qty = 0.0  # the best price on its side now
        opp = t.ask_px[i, 0] if side == BUY else t.bid_px[i, 0]
        order.crossed = bool(opp > 0 and (opp <= order.limit if side == BUY else opp >= order.limit))

    def next_fill(self, order: Order, until_ts: int) -> PendingFill | None:
        """The order's next fill at or before ``until_ts``, or None. Nothing changes until the
        caller :meth:`take` s it at its time (a cancel may reach the exchange first)."""
        if not order.live or order.status == "sent":
            return None
        t, side = self.tape, order.request.side
        end = t.index_at(until_ts) + 1
        same = (t.bid_px, t.bid_qty) if side == BUY else (t.ask_px, t.ask_qty)
        opp = (t.ask_px, t.ask_qty) if side == BUY else (t.bid_px, t.bid_qty)
        row, qty, price, ahead, level, crossed = scan_resting(
            t.kind,
            t.price,
            t.volume,
            t.side,
            t.phase,
            *same,
            *opp,
            order.cursor + 1,
            end,
            side,
            order.limit,
            order.remaining,
            order.queue_ahead,
            order.level_qty,
            order.crossed,
            self._probabilistic,
            self.config.queue_power,
        )
        if row < 0:
            return None
        return PendingFill(order, int(row), int(t.ts[row]), int(qty), int(price), ahead, level, crossed)

    def take(self, pending: PendingFill) -> Fill:
        """Apply a fill :meth:`next_fill` found."""
        order, t, row = pending.order, self.tape, pending.row
        order.cursor, order.queue_ahead, order.level_qty, order.crossed = (
            row,
            pending.queue_ahead,
            pending.level_qty,
            pending.crossed,
        )
        liquidity = "auction" if t.is_uncross(row) else "maker"
        fill = self._fill(order, pending.qty, pending.price, pending.ts, liquidity)
        if liquidity == "auction" and order.remaining:
            if order.request.order_type == OrderType.MARKET:
                order.status = "cancelled"  # the auction matched less than we asked
            else:
                self._queue_on_arrival(order, row)
        return fill


@dataclass(frozen=True)
class PendingFill:
    order: Order
    row: int
    ts: int
    qty: int
    price: int
    queue_ahead: float
    level_qty: float
    crossed: bool


_ids = itertools.count(1)


def new_order(request: OrderRequest, sent_ts: int, config: ExecutionConfig) -> Order:
    return Order(next(_ids), request, sent_ts, sent_ts + config.entry_latency_us, request.qty)


@dataclass
class Account:
    """Cash and positions, moved only by fills; no short selling."""

    cash: float
    positions: dict[str, int] = field(default_factory=dict)

    def apply(self, fill: Fill) -> None:
        self.cash += fill.cash_flow
        self.positions[fill.stock_code] = self.positions.get(fill.stock_code, 0) + fill.side * fill.qty
        if self.positions[fill.stock_code] < 0:
            raise AssertionError(
                f"{fill.stock_code}: position went short ({self.positions[fill.stock_code]})"
            )
