"""KRX price rules: tick sizes (호가가격단위) by price, market and date, the tick grid, and the
daily price limits (가격제한폭). Every function is small and pure; source of every number:
``shared/docs/krx-market-rules.md``."""

from __future__ import annotations

import bisect
import datetime as dt

import numpy as np

MARKETS = ("KOSPI", "KOSDAQ")
FUND_MARKETS = ("ETF", "ETN", "ELW")  # keep a flat 5-won tick

# The unified table took effect on this date for KOSPI and KOSDAQ alike.
UNIFIED_TICK_TABLE_FROM = dt.date(2023, 1, 25)
# 중간가호가 (mid-point orders), introduced on KRX with the Nextrade launch on 2025-03-04: in the
# continuous session they trade at the middle of the best bid and ask, half a tick off the grid
# (truncated to whole won where the tick is odd or 1). KIS's H0STASP0 grew MID_PRC and
# MIDP_TOTAL_RSQN fields for them; published H0STCNT0 frames print at 71,950 and 277,750.
MIDPOINT_ORDERS_FROM = dt.date(2025, 3, 4)

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


def check_market(market: str) -> str:
    if market not in MARKETS and market not in FUND_MARKETS:
        raise ValueError(f"unknown market {market!r}: expected one of {MARKETS + FUND_MARKETS}")
    return market


def tick_table(market: str = "KOSPI", on: dt.date | None = None) -> tuple[tuple[int, int], ...]:
    """The (upper bound, tick) bands in force for ``market`` on ``on`` (None: today's rules)."""
    check_market(market)
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


def is_on_grid_array(
    prices: np.ndarray, market: str = "KOSPI", on: dt.date | None = None, midpoint: bool = False
) -> np.ndarray:
    """Prices on the tick grid; with ``midpoint``, half a tick off it is allowed too (a mid-point
    order's print in the continuous session from :data:`MIDPOINT_ORDERS_FROM`)."""
    prices = np.asarray(prices, dtype=np.int64)
    ticks = np.maximum(tick_size_array(prices, market, on), 1)
    offset = prices % ticks
    return (prices > 0) & ((offset == 0) | (midpoint & (offset == ticks // 2)))


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
