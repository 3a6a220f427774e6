"""The live executor's risk manager: the last gate an order passes before it goes to the broker.
``serving/executor.py`` calls :meth:`RiskManager.check` with each :class:`OrderRequest`, its clock
(µs), the stock's :class:`Quote` and the account's :class:`Exposure` as the journal knows it, sends
the order only on ``""`` and journals any other answer as the refusal's reason; the status page
shows :meth:`RiskManager.state`.

What must hold:
- every refusal names its rule (:data:`RULES`) and the numbers that broke it;
- the kill switch, trading hours (the day's schedule from ``market.krx``, so CSAT and new-year
  shifts are right), price sanity (KRX grid and daily limits, distance from the last trade),
  duplicates and the order rate apply to every order;
- a sell never exceeds what is held minus working sells (retail: no short selling); any sell that
  passes that only cuts risk, so the loss limit, notional and position-count rules apply to buys only;
- only passes count toward the rate: at most ``max_orders_per_minute`` in any 60 s window.
KRX rules are read from ``market.krx``, never re-implemented here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from backtest.execution import BUY, SELL, OrderRequest, OrderType
from market import krx

WINDOW_US = 60 * krx.US_PER_SECOND


class RiskLimits(BaseModel):
    """The risk manager's limits (KRW, counts, fractions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_notional: int = Field(10_000_000, gt=0)  # qty x (limit price, or the last trade)
    max_stock_notional: int = Field(20_000_000, gt=0)  # held + working buys + this buy, one stock
    max_positions: int = Field(5, gt=0)  # stocks held or with working buys
    daily_loss_limit: int = Field(1_000_000, gt=0)  # buys stop when daily P&L <= -limit
    max_orders_per_minute: int = Field(30, gt=0)  # passes in a sliding 60 s window
    closing_call_entries: bool = False  # new buys in the closing call
    max_price_distance: float = Field(0.05, gt=0, lt=1)  # limit price vs the last trade


@dataclass(frozen=True, slots=True)
class Quote:
    stock_code: str
    market: str
    day: dt.date
    last_price: int
    lower_limit: int
    upper_limit: int


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    client_id: int
    stock_code: str
    side: int
    qty: int  # what is left of it
    limit_price: int | None
    event_id: str


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the journal knows of the account now."""

    positions: Mapping[str, int]  # shares held by stock
    marks: Mapping[str, int]  # last known price by stock
    working: Sequence[WorkingOrder]
    entered_events: frozenset[str]  # VI events already entered today
    daily_pnl: float  # realised + unrealised, fees included (KRW)


class Refusal(NamedTuple):
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Ask:
    """One order and all a rule may look at (each rule below is a pure function of it)."""

    request: OrderRequest
    now_us: int
    quote: Quote
    exposure: Exposure
    limits: RiskLimits

    @property
    def price(self) -> int:
        """What the order is valued at: its limit price, or the last trade for a market order."""
        r = self.request
        limit = r.limit_price if r.order_type == OrderType.LIMIT else None
        return self.quote.last_price if limit is None else int(limit)


def _krw(x: float) -> str:
    return f"{x:,.0f}"


def _clock(us: int) -> str:
    return krx.from_us(us).strftime("%H:%M:%S")


def order_form(a: Ask) -> str:
    r = a.request
    if r.side not in (BUY, SELL):
        return f"side {r.side} is neither buy (1) nor sell (-1)"
    if r.qty <= 0:
        return f"quantity {r.qty} is not positive"
    if r.order_type == OrderType.LIMIT and r.limit_price is None:
        return "a limit order without a limit price"
    if r.order_type == OrderType.MARKET and r.limit_price is not None:
        return f"a market order with a limit price ({r.limit_price:,}): which is meant?"
    return ""


def session(a: Ask) -> str:
    """Orders from the open to the closing call's nominal end (in the open's random end an order
    joins the opening call); no new buys in the closing call unless the limits allow them."""
    day = krx.seoul_date(a.now_us)
    if not krx.is_trading_day(day):
        return f"{day} is not a KRX trading day"
    s = krx.session_schedule(day)  # CSAT days and the year's first day shift these times
    open_us, close_us = krx.epoch_us(s.continuous_start), krx.epoch_us(s.closing_auction_end)
    now = _clock(a.now_us)
    if not open_us <= a.now_us < close_us:
        return f"outside trading hours: it is {now}, orders go {_clock(open_us)}-{_clock(close_us)} on {day}"
    call_us = krx.epoch_us(s.closing_auction_start)
    if a.request.side == BUY and a.now_us >= call_us and not a.limits.closing_call_entries:
        return f"no new buys in the closing call ({_clock(call_us)}-{_clock(close_us)}): it is {now}"
    return ""


def price(a: Ask) -> str:
    q, r, today = a.quote, a.request, krx.seoul_date(a.now_us)
    if q.stock_code != r.stock_code:
        return f"the quote is for {q.stock_code}, the order for {r.stock_code}"
    if q.day != today:
        return f"the quote of {q.day} is stale on {today}"
    if q.last_price <= 0:
        return f"no last price for {q.stock_code} (last {q.last_price})"
    p, last = r.limit_price, q.last_price
    if r.order_type == OrderType.MARKET or p is None:
        return ""
    if not krx.is_on_grid(p, q.market, q.day):
        return f"limit price {_krw(p)} is off the {q.market} tick grid"
    if not q.lower_limit <= p <= q.upper_limit:
        return f"limit price {_krw(p)} outside the daily limits {_krw(q.lower_limit)}-{_krw(q.upper_limit)}"
    if abs(p - last) > a.limits.max_price_distance * last:
        return (
            f"limit price {_krw(p)} is {abs(p - last) / last:.1%} from the last trade {_krw(last)}, "
            f"over {a.limits.max_price_distance:.1%}"
        )
    return ""


def short_sell(a: Ask) -> str:
    r, e = a.request, a.exposure
    if r.side != SELL:
        return ""
    held = e.positions.get(r.stock_code, 0)
    selling = sum(w.qty for w in e.working if w.stock_code == r.stock_code and w.side == SELL)
    if r.qty > held - selling:
        free = held - selling
        return f"sell {r.qty:,} over the free position {free:,} (held {held:,}, working sells {selling:,})"
    return ""


def duplicate(a: Ask) -> str:
    r = a.request
    for w in a.exposure.working:
        if w.stock_code == r.stock_code and w.side == r.side:
            side = "buy" if w.side == BUY else "sell"
            return f"duplicate order: {side} {w.client_id} of {w.stock_code} is still working"
    if r.side == BUY and r.event_id and r.event_id in a.exposure.entered_events:
        return f"duplicate entry: event {r.event_id} was already entered"
    return ""


def daily_loss(a: Ask) -> str:
    pnl, limit = a.exposure.daily_pnl, a.limits.daily_loss_limit
    if pnl <= -limit:
        return f"daily P&L {_krw(pnl)} KRW at or below the loss limit -{_krw(limit)}: no new buys"
    return ""


def order_notional(a: Ask) -> str:
    notional, limit = a.request.qty * a.price, a.limits.max_order_notional
    if notional > limit:
        return f"order notional {_krw(notional)} KRW over the per-order limit {_krw(limit)}"
    return ""


def stock_notional(a: Ask) -> str:
    code, e = a.request.stock_code, a.exposure
    mark = e.marks.get(code, a.quote.last_price)
    held = e.positions.get(code, 0) * mark
    buys = [w for w in e.working if w.stock_code == code and w.side == BUY]
    working = sum(w.qty * (mark if w.limit_price is None else w.limit_price) for w in buys)
    total, order = held + working + a.request.qty * a.price, a.request.qty * a.price
    if total > a.limits.max_stock_notional:
        return (
            f"{code} notional {_krw(total)} KRW (held {_krw(held)} + working buys {_krw(working)} + order "
            f"{_krw(order)}) over the per-stock limit {_krw(a.limits.max_stock_notional)}"
        )
    return ""


def open_stocks(exposure: Exposure) -> set[str]:
    """Stocks held or with a working buy: what counts toward ``max_positions``."""
    held = {code for code, qty in exposure.positions.items() if qty > 0}
    return held | {w.stock_code for w in exposure.working if w.side == BUY}


def max_positions(a: Ask) -> str:
    stocks = open_stocks(a.exposure)
    if a.request.stock_code not in stocks and len(stocks) >= a.limits.max_positions:
        return f"{len(stocks)} stocks open, the limit is {a.limits.max_positions}: no new stock"
    return ""


# Checked in this order; the first that fails is the reason. A sell that passed short_sell only
# cuts risk, so the buy-only rules come last and a sell skips them.
ALL_ORDERS: tuple[tuple[str, Callable[[Ask], str]], ...] = (
    ("order_form", order_form),
    ("session", session),
    ("price", price),
    ("short_sell", short_sell),
    ("duplicate", duplicate),
)
BUYS_ONLY: tuple[tuple[str, Callable[[Ask], str]], ...] = (
    ("daily_loss", daily_loss),
    ("order_notional", order_notional),
    ("stock_notional", stock_notional),
    ("max_positions", max_positions),
)


def first_refusal(ask: Ask) -> Refusal | None:
    """The first stateless rule the order breaks (all but the kill switch and the rate), or None."""
    for name, rule in ALL_ORDERS + BUYS_ONLY if ask.request.side == BUY else ALL_ORDERS:
        reason = rule(ask)
        if reason:
            return Refusal(name, reason)
    return None


RULES = ("kill_switch", *(name for name, _ in ALL_ORDERS + BUYS_ONLY), "rate")  # the status page's counts


class RiskManager:
    """The stateful part: the kill switch, the sliding order-rate window and the refusal counts."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.killed = False
        self.kill_reason = ""
        self._passes: deque[int] = deque()  # pass times (µs), oldest first, only the last 60 s
        self._refusals: Counter[str] = Counter({rule: 0 for rule in RULES})
        self._passed = 0

    def kill(self, reason: str) -> None:
        self.killed, self.kill_reason = True, reason

    def check(self, request: OrderRequest, now_us: int, quote: Quote, exposure: Exposure) -> str:
        """The empty string if the order may go to the broker (it then counts toward the rate), else
        the reason, a sentence naming the rule's numbers."""
        refusal = self._refusal(Ask(request, now_us, quote, exposure, self.limits))
        if refusal is not None:
            self._refusals[refusal.rule] += 1
            return refusal.reason
        self._passes.append(now_us)
        self._passed += 1
        return ""

    def _refusal(self, ask: Ask) -> Refusal | None:
        if self.killed:
            return Refusal("kill_switch", f"kill switch: {self.kill_reason}")
        refusal = first_refusal(ask)
        if refusal is not None:
            return refusal
        recent = self._recent(ask.now_us)
        if recent >= self.limits.max_orders_per_minute:
            limit = self.limits.max_orders_per_minute
            return Refusal("rate", f"{recent} orders passed in the last 60 s, the limit is {limit}")
        return None

    def _recent(self, now_us: int) -> int:
        while self._passes and self._passes[0] <= now_us - WINDOW_US:
            self._passes.popleft()
        # a clock that stepped back keeps the later passes counted: the safe side
        return len(self._passes)

    def state(self, now_us: int) -> dict:
        """For the status page (JSON-able)."""
        return {
            "killed": self.killed,
            "kill_reason": self.kill_reason,
            "limits": self.limits.model_dump(),
            "orders_last_minute": self._recent(now_us),
            "passed": self._passed,
            "refusals_by_rule": dict(self._refusals),
        }
