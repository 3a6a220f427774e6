"""KRX volatility interruption rules (변동성완화장치): the static band, the dynamic bands by group
and session, and the inclusive trigger test in exact integers. Source:
``shared/docs/krx-market-rules.md``."""

from __future__ import annotations

from numba import njit

STATIC_VI_RATE = 0.10  # 정적 VI: +-10% of the static reference
VI_AUCTION_SECONDS = 120  # a VI is a 2-minute single-price call auction
VI_SESSIONS = ("continuous", "closing_auction", "off_hours")


def dynamic_vi_rate(
    kospi200: bool,
    session: str,
    expiry_day: bool = False,
    *,
    kosdaq150: bool = False,
    futures_underlying: bool = False,
) -> float:
    """동적 VI band for a stock: KOSPI200 members 3% / 2% (closing auction) / 3% (off hours), all
    others (KOSDAQ150 members too) 6% / 4% / 6%. On a derivatives expiry day the closing-auction
    band is 1% for index constituents (KOSPI200, KOSDAQ150) and single-stock-futures underlyings
    (주식선물 기초자산)."""
    if session not in VI_SESSIONS:
        raise ValueError(f"unknown session {session!r}: expected one of {VI_SESSIONS}")
    if session == "closing_auction":
        if expiry_day and (kospi200 or kosdaq150 or futures_underlying):
            return 0.01
        return 0.02 if kospi200 else 0.04
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
