"""KRX trading rules: tick sizes (호가가격단위), daily price limits (가격제한폭), VI rates
(변동성완화장치), costs, the session schedule and the XKRX calendar.

Everything here is a small pure function of (price, market, date); the exchange engine, the
synthetic market, the VI detector and the execution model all read these rules from here.
Source of every number: ``shared/docs/krx-market-rules.md``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
from numba import njit

if TYPE_CHECKING:
    import exchange_calendars

SEOUL = ZoneInfo("Asia/Seoul")

MARKETS = ("KOSPI", "KOSDAQ")
FUND_MARKETS = ("ETF", "ETN", "ELW")  # keep a flat 5-won tick

# The unified table took effect on this date for KOSPI and KOSDAQ alike.
UNIFIED_TICK_TABLE_FROM = dt.date(2023, 1, 25)

# (upper bound exclusive, tick) bands, ascending.
_INF = 1 << 62
TICK_TABLE_UNIFIED: tuple[tuple[int, int], ...] = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
    (_INF, 1_000),
)
TICK_TABLE_KOSPI_PRE2023: tuple[tuple[int, int], ...] = (
    (1_000, 1),
    (5_000, 5),
    (10_000, 10),
    (50_000, 50),
    (100_000, 100),
    (500_000, 500),
    (_INF, 1_000),
)
TICK_TABLE_KOSDAQ_PRE2023: tuple[tuple[int, int], ...] = (
    (1_000, 1),
    (5_000, 5),
    (10_000, 10),
    (50_000, 50),
    (_INF, 100),
)
TICK_TABLE_FUND: tuple[tuple[int, int], ...] = ((_INF, 5),)

DAILY_LIMIT_RATE_PCT = 30  # 가격제한폭 +-30% of the base price
STATIC_VI_RATE = 0.10  # 정적 VI: +-10% of the static reference
VI_AUCTION_SECONDS = 120  # a VI is a 2-minute single-price call auction
RANDOM_END_MAX_SECONDS = 30  # every call auction ends at a random moment within 30 s (랜덤엔드)
DEFAULT_BROKERAGE_RATE = 0.00014  # KIS online, per side; a third-party figure, so configurable

# 증권거래세 + 농어촌특별세 on the sale amount, by settlement year (T+2).
SELL_TAX_BY_YEAR: dict[int, dict[str, float]] = {
    2021: {"KOSPI": 0.0023, "KOSDAQ": 0.0023},
    2022: {"KOSPI": 0.0023, "KOSDAQ": 0.0023},
    2023: {"KOSPI": 0.0020, "KOSDAQ": 0.0020},
    2024: {"KOSPI": 0.0018, "KOSDAQ": 0.0018},
    2025: {"KOSPI": 0.0015, "KOSDAQ": 0.0015},
    2026: {"KOSPI": 0.0020, "KOSDAQ": 0.0020},
}
SETTLEMENT_LAG_SESSIONS = 2  # T+2

VI_SESSIONS = ("continuous", "closing_auction", "off_hours")


def _check_market(market: str) -> str:
    if market not in MARKETS and market not in FUND_MARKETS:
        raise ValueError(f"unknown market {market!r}: expected one of {MARKETS + FUND_MARKETS}")
    return market


def tick_table(market: str = "KOSPI", on: dt.date | None = None) -> tuple[tuple[int, int], ...]:
    """The (upper bound, tick) bands in force for ``market`` on ``on`` (None: today's rules)."""
    _check_market(market)
    if market in FUND_MARKETS:
        return TICK_TABLE_FUND
    if on is None or on >= UNIFIED_TICK_TABLE_FROM:
        return TICK_TABLE_UNIFIED
    return TICK_TABLE_KOSPI_PRE2023 if market == "KOSPI" else TICK_TABLE_KOSDAQ_PRE2023


def _tick_in(table: tuple[tuple[int, int], ...], price: int) -> int:
    return table[bisect.bisect_right([b for b, _ in table], price)][1]


def tick_size(price: int, market: str = "KOSPI", on: dt.date | None = None) -> int:
    """호가가격단위: the tick of ``price`` (KRW) in ``market`` on date ``on`` (None: today's rules)."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    return _tick_in(tick_table(market, on), int(price))


def tick_size_array(prices: np.ndarray, market: str = "KOSPI", on: dt.date | None = None) -> np.ndarray:
    """Vectorised :func:`tick_size` for validation of whole columns (non-positive prices give 0)."""
    table = tick_table(market, on)
    bounds = np.array([b for b, _ in table], dtype=np.int64)
    ticks = np.array([t for _, t in table], dtype=np.int64)
    prices = np.asarray(prices, dtype=np.int64)
    out = ticks[np.searchsorted(bounds, prices, side="right")]
    return np.where(prices > 0, out, 0)


def floor_to_tick(price: int, market: str = "KOSPI", on: dt.date | None = None) -> int:
    """The largest grid price <= ``price``. Band bounds are multiples of every smaller tick, so
    flooring with the tick of ``price`` itself never leaves its band."""
    t = tick_size(price, market, on)
    return int(price) - int(price) % t


def ceil_to_tick(price: int, market: str = "KOSPI", on: dt.date | None = None) -> int:
    """The smallest grid price >= ``price`` (at most the band's upper bound, itself on the grid)."""
    t = tick_size(price, market, on)
    return -(-int(price) // t) * t


def is_on_grid(price: int, market: str = "KOSPI", on: dt.date | None = None) -> bool:
    return price > 0 and price % tick_size(price, market, on) == 0


def is_on_grid_array(prices: np.ndarray, market: str = "KOSPI", on: dt.date | None = None) -> np.ndarray:
    prices = np.asarray(prices, dtype=np.int64)
    ticks = tick_size_array(prices, market, on)
    return (prices > 0) & (prices % np.where(ticks > 0, ticks, 1) == 0)


def price_limits(base_price: int, market: str = "KOSPI", on: dt.date | None = None) -> tuple[int, int]:
    """(lower, upper) daily limits (하한가, 상한가) by KRX's truncation rule:
    step = floor_to_tick(base * 30%, tick(base)); upper = floor_to_tick(base + step); lower = base - step."""
    base = int(base_price)
    if not is_on_grid(base, market, on):
        raise ValueError(f"base price {base} is not on the {market} tick grid")
    t = tick_size(base, market, on)
    step = base * DAILY_LIMIT_RATE_PCT // 100
    step -= step % t
    return base - step, floor_to_tick(base + step, market, on)


def price_grid(lower: int, upper: int, market: str = "KOSPI", on: dt.date | None = None) -> np.ndarray:
    """Every valid price from ``lower`` to ``upper`` inclusive, ascending (the day's order book rows)."""
    table = tick_table(market, on)
    parts, lo = [], ceil_to_tick(lower, market, on)
    for bound, tick in table:
        if lo > upper:
            break
        if lo < bound:
            hi = min(upper, bound - 1)
            parts.append(np.arange(lo, hi + 1, tick, dtype=np.int64))
            lo = bound
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------- volatility interruption


def dynamic_vi_rate(kospi200: bool, session: str, expiry_day: bool = False) -> float:
    """동적 VI band for a stock: KOSPI200 members 3% / 2% (closing auction) / 3% (off hours), all
    others 6% / 4% / 6%. On a derivatives expiry day the closing-auction band of KOSPI200 members
    (the index constituents and single-stock-futures underlyings we can identify) is 1%."""
    if session not in VI_SESSIONS:
        raise ValueError(f"unknown session {session!r}: expected one of {VI_SESSIONS}")
    if session == "closing_auction":
        if kospi200:
            return 0.01 if expiry_day else 0.02
        return 0.04
    return 0.03 if kospi200 else 0.06


def rate_to_bp(rate: float) -> int:
    """A band rate as integer basis points, so band checks stay exact in integer KRW."""
    return round(rate * 10_000)


@njit(cache=True)
def band_direction(price: int, reference: int, rate_bp: int) -> int:
    """+1 if ``price`` is at or above reference x (1 + rate), -1 if at or below reference x (1 - rate),
    else 0 (also for a missing reference or band): the VI trigger test, inclusive, in exact integers.
    Jitted, so the exchange kernels call this very function."""
    if rate_bp <= 0 or reference <= 0:
        return 0
    if price * 10_000 >= reference * (10_000 + rate_bp):
        return 1
    if price * 10_000 <= reference * (10_000 - rate_bp):
        return -1
    return 0


# ---------------------------------------------------------------- costs


def sell_tax_rate(market: str, on: dt.date) -> float:
    """Transaction tax + 농특세 on a sale traded on ``on`` (a fraction), by the settlement year (T+2)."""
    _check_market(market)
    if market in FUND_MARKETS:
        return 0.0  # ETFs are exempt from the securities transaction tax
    year = settlement_date(on).year
    if year not in SELL_TAX_BY_YEAR:
        known = f"{min(SELL_TAX_BY_YEAR)}-{max(SELL_TAX_BY_YEAR)}"
        raise ValueError(f"no sell-tax rate known for settlement year {year} (table covers {known})")
    return SELL_TAX_BY_YEAR[year][market]


@dataclass(frozen=True)
class CostModel:
    """Brokerage on both sides, sell tax on the sale amount."""

    brokerage_rate: float = DEFAULT_BROKERAGE_RATE

    def buy_cost(self, amount: float) -> float:
        return amount * self.brokerage_rate

    def sell_cost(self, amount: float, market: str, on: dt.date) -> float:
        return amount * (self.brokerage_rate + sell_tax_rate(market, on))

    def round_trip_rate(self, market: str, on: dt.date) -> float:
        return 2 * self.brokerage_rate + sell_tax_rate(market, on)


# ---------------------------------------------------------------- calendar


@lru_cache(maxsize=1)
def trading_calendar() -> exchange_calendars.ExchangeCalendar:
    """The XKRX calendar of ``exchange-calendars`` (holidays, 수능/new-year late opens)."""
    import exchange_calendars as xcals

    return xcals.get_calendar("XKRX", start="2005-01-01", end=f"{dt.date.today().year + 1}-12-31")


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """XKRX sessions from ``start`` to ``end`` inclusive."""
    return [d.date() for d in trading_calendar().sessions_in_range(start.isoformat(), end.isoformat())]


def is_trading_day(day: dt.date) -> bool:
    return bool(trading_calendar().is_session(day.isoformat()))


def previous_trading_day(day: dt.date) -> dt.date:
    """The last XKRX session before ``day``."""
    previous = (day - dt.timedelta(days=1)).isoformat()
    return trading_calendar().date_to_session(previous, direction="previous").date()


def next_trading_days(start: dt.date, count: int) -> list[dt.date]:
    """``count`` sessions from ``start`` on (``start`` included when it is a session)."""
    cal = trading_calendar()
    first = cal.date_to_session(start.isoformat(), direction="next")
    sessions = cal.sessions_window(first, count)
    return [d.date() for d in sessions]


def settlement_date(trade_date: dt.date) -> dt.date:
    """T+2 in XKRX sessions."""
    cal = trading_calendar()
    session = cal.date_to_session(trade_date.isoformat(), direction="previous")
    return cal.session_offset(session, SETTLEMENT_LAG_SESSIONS).date()


def is_first_trading_day_of_year(day: dt.date) -> bool:
    return bool(trading_days(dt.date(day.year, 1, 1), day) == [day])


def derivatives_expiry_day(year: int, month: int) -> dt.date:
    """Last trading day of equity derivatives for a delivery month: the second Thursday, or the
    session before it when that Thursday is a holiday. KOSPI200 options and single-stock futures
    deliver every month, so every month has one."""
    first = dt.date(year, month, 1)
    second_thursday = first + dt.timedelta(days=(3 - first.weekday()) % 7 + 7)
    cal = trading_calendar()
    return cal.date_to_session(second_thursday.isoformat(), direction="previous").date()


def is_derivatives_expiry_day(day: dt.date) -> bool:
    return derivatives_expiry_day(day.year, day.month) == day


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True)
class SessionSchedule:
    """One regular trading day (Asia/Seoul). The closing call ends at ``closing_auction_end``
    plus a random delay of up to 30 s, drawn by the engine."""

    day: dt.date
    opening_auction_start: dt.datetime  # 장전 동시호가
    indicative_from: dt.datetime  # 예상체결가 shown from about 08:40
    continuous_start: dt.datetime  # 장 개시 (the opening uncross)
    closing_auction_start: dt.datetime  # 장 마감 동시호가
    closing_auction_end: dt.datetime  # nominal; the real end is random within 30 s after

    def session_labels(self, ts_us: np.ndarray) -> np.ndarray:
        """:meth:`session_at` for int64 microseconds since the epoch, vectorised."""
        bounds = np.array(
            [
                epoch_us(t)
                for t in (self.opening_auction_start, self.continuous_start, self.closing_auction_start)
            ],
            dtype=np.int64,
        )
        return _SESSION_LABELS[np.searchsorted(bounds, np.asarray(ts_us, dtype=np.int64), side="right")]

    def session_at(self, ts: dt.datetime) -> str:
        if ts < self.opening_auction_start:
            return "closed"
        if ts < self.continuous_start:
            return "opening_auction"
        if ts < self.closing_auction_start:
            return "continuous"
        return "closing_auction"


_SESSION_LABELS = np.array(("closed", "opening_auction", "continuous", "closing_auction"), dtype=object)


def epoch_us(t: dt.datetime) -> int:
    """A tz-aware datetime as int64 microseconds since the Unix epoch (vicap's time unit)."""
    if t.tzinfo is None:
        raise ValueError(f"timestamp {t} has no time zone; vicap times are Asia/Seoul")
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def session_labels_by_day(ts_us: np.ndarray) -> np.ndarray:
    """:meth:`SessionSchedule.session_labels` for µs timestamps spanning any number of days, each
    against its own day's schedule (Seoul has no daylight saving: a day is a fixed +09:00 offset)."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    day_number = (ts_us + 9 * 3600 * 1_000_000) // (86_400 * 1_000_000)
    labels = np.empty(len(ts_us), dtype=_SESSION_LABELS.dtype)
    for n in np.unique(day_number):
        mine = day_number == n
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(n))
        labels[mine] = session_schedule(day).session_labels(ts_us[mine])
    return labels


@lru_cache(maxsize=4096)
def session_schedule(day: dt.date) -> SessionSchedule:
    """The regular-day schedule; the first trading day of a year opens at 10:00 (its opening call
    runs from 08:30 to 10:00)."""

    def at(h: int, m: int) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, h, m, tzinfo=SEOUL)

    late_open = is_first_trading_day_of_year(day)
    return SessionSchedule(
        day=day,
        opening_auction_start=at(8, 30),
        indicative_from=at(8, 40),
        continuous_start=at(10, 0) if late_open else at(9, 0),
        closing_auction_start=at(15, 20),
        closing_auction_end=at(15, 30),
    )


def random_end_delays_us(rng: np.random.Generator, count: int) -> np.ndarray:
    """Delays of random auction ends (랜덤엔드): uniform over 0..30 s, in microseconds."""
    return rng.integers(0, RANDOM_END_MAX_SECONDS * 1_000_000 + 1, size=count, dtype=np.int64)
