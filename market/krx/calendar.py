"""The KRX trading calendar: XKRX sessions from ``exchange-calendars`` (holidays), settlement
(T+2), the equity-derivatives expiry days and the CSAT days. Session *times* live in
``market.krx.sessions``."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import exchange_calendars

SETTLEMENT_LAG_SESSIONS = 2  # T+2

# 대학수학능력시험 (CSAT) days: KRX moves every session one hour later. XKRX does not encode it (its
# 2024-11-14 opens at 09:00), so this table is the one place that does. Sources:
# shared/docs/krx-market-rules.md (2019-11-14, 2020-12-03, 2021-11-18, 2022-11-17, 2023-11-16,
# 2024-11-14, 2025-11-13) and KRX's announcements as reported for the years before:
# 2014-11-13 (m.ajunews.com/view/20141113084735267), 2016-11-17
# (moneys.co.kr/article/2016111707198088217), 2018-11-15 (sobilife.com/news/articleView.html?idxno=16270).
# A year missing here (2015, 2017, 2026 on) is taken as a regular day until its date is added.
CSAT_DAYS: frozenset[dt.date] = frozenset(
    {
        dt.date(2014, 11, 13),
        dt.date(2016, 11, 17),
        dt.date(2018, 11, 15),
        dt.date(2019, 11, 14),
        dt.date(2020, 12, 3),
        dt.date(2021, 11, 18),
        dt.date(2022, 11, 17),
        dt.date(2023, 11, 16),
        dt.date(2024, 11, 14),
        dt.date(2025, 11, 13),
    }
)


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


@lru_cache(maxsize=4096)
def settlement_date(trade_date: dt.date) -> dt.date:
    """T+2 in XKRX sessions (cached: every simulated sale asks for its tax by it)."""
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


def is_csat_day(day: dt.date) -> bool:
    """A CSAT day (수능일): every session one hour later (see :data:`CSAT_DAYS`)."""
    return day in CSAT_DAYS
