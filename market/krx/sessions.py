"""The KRX session schedule of a day (Asia/Seoul), the session label of any instant, and the
random ends (랜덤엔드) of call auctions. Source: ``shared/docs/krx-market-rules.md``.

A regular day: opening call 08:30-09:00 (indicative prices from 08:40), continuous trading
09:00-15:20, closing call 15:20-15:30, post-close trading at the closing price 15:40-16:00 and
the off-hours single-price session 16:00-18:00. Two kinds of day move these times, and XKRX's
own session times know only the first:
- the first trading day of a year opens at 10:00 (the opening call runs 08:30-10:00);
- a CSAT day (대학수학능력시험, :data:`market.krx.calendar.CSAT_DAYS`) moves every session one hour
  later, the off-hours session still ending at 18:00.

Every call auction ends at a random moment within 30 s after its nominal end, so the open of
real data comes anywhere in 09:00:00-09:00:30 and the close in 15:30:00-15:30:30; a VI in the
opening or closing call extends it by 2 minutes (plus its own random end).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from market.krx.calendar import is_csat_day, is_first_trading_day_of_year
from market.krx.clock import SEOUL, US_PER_SECOND, epoch_us, seoul_day_number
from market.krx.vi import VI_AUCTION_SECONDS

RANDOM_END_MAX_SECONDS = 30  # every call auction ends at a random moment within 30 s (랜덤엔드)
RANDOM_END_US = RANDOM_END_MAX_SECONDS * US_PER_SECOND
# the longest a call auction extended by a VI can run past its random end: 2 minutes + its own
EXTENSION_MAX_US = VI_AUCTION_SECONDS * US_PER_SECOND + RANDOM_END_US

SESSIONS = ("closed", "opening_auction", "continuous", "closing_auction", "post_close", "off_hours")


@dataclass(frozen=True)
class SessionSchedule:
    """One trading day's sessions (Asia/Seoul); the auction ends are nominal (see module doc)."""

    day: dt.date
    opening_auction_start: dt.datetime  # 장전 동시호가
    indicative_from: dt.datetime  # 예상체결가 shown from about 08:40
    continuous_start: dt.datetime  # 장 개시: the opening call's nominal end
    closing_auction_start: dt.datetime  # 장 마감 동시호가
    closing_auction_end: dt.datetime  # nominal; the real end is random within 30 s after
    post_close_start: dt.datetime  # 장후 시간외 종가
    off_hours_start: dt.datetime  # 시간외 단일가 (a call every 10 minutes)
    off_hours_end: dt.datetime

    def bounds_us(self) -> np.ndarray:
        """Where each label of :data:`SESSIONS` after "closed" starts, then where "closed" resumes."""
        return np.array(
            [
                epoch_us(t)
                for t in (
                    self.opening_auction_start,
                    self.continuous_start,
                    self.closing_auction_start,
                    self.post_close_start,
                    self.off_hours_start,
                    self.off_hours_end,
                )
            ],
            dtype=np.int64,
        )

    def session_labels(self, ts_us: np.ndarray) -> np.ndarray:
        """The session of each instant by the clock (int64 µs since the epoch), vectorised. The
        closing call's label runs until the post-close session, so a random end or a VI extension
        of the close is still the closing call; the open's random end is not visible to a clock
        (see :meth:`label_fits`)."""
        where = np.searchsorted(self.bounds_us(), np.asarray(ts_us, dtype=np.int64), side="right")
        return _LABELS_BY_BOUND[where]

    def session_at(self, ts: dt.datetime) -> str:
        """The session of one instant (the scalar twin of :meth:`session_labels`)."""
        if ts < self.opening_auction_start or ts >= self.off_hours_end:
            return "closed"
        if ts < self.continuous_start:
            return "opening_auction"
        if ts < self.closing_auction_start:
            return "continuous"
        if ts < self.post_close_start:
            return "closing_auction"
        return "post_close" if ts < self.off_hours_start else "off_hours"

    def label_fits(self, ts_us: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Whether each label may stand at its instant: the clock's label, or the opening call
        until its random end can have come (a source that knows the real phase, like the
        exchange engine, labels the rows before the real open so), or "closed" once the closing
        call's nominal end has passed (the engine closes the day there)."""
        ts_us = np.asarray(ts_us, dtype=np.int64)
        labels = np.asarray(labels, dtype=object)
        ok = labels == self.session_labels(ts_us)
        open_us, close_end_us = epoch_us(self.continuous_start), epoch_us(self.closing_auction_end)
        ok |= (labels == "opening_auction") & (ts_us >= open_us) & (ts_us <= open_us + RANDOM_END_US)
        ok |= (labels == "closed") & (ts_us >= close_end_us)
        return ok

    def in_opening_random_end(self, ts_us: np.ndarray) -> np.ndarray:
        """Instants when the opening call may still be running by its random end (09:00:00-09:00:30)."""
        open_us = epoch_us(self.continuous_start)
        ts_us = np.asarray(ts_us, dtype=np.int64)
        return (ts_us >= open_us) & (ts_us <= open_us + RANDOM_END_US)


_LABELS_BY_BOUND = np.array(
    ("closed", "opening_auction", "continuous", "closing_auction", "post_close", "off_hours", "closed"),
    dtype=object,
)


def per_day(ts_us: np.ndarray, rule: Callable[..., np.ndarray], *columns: np.ndarray) -> np.ndarray:
    """``rule(schedule, ts, *columns)`` for µs timestamps spanning any number of days, each day's
    rows against that day's schedule (``rule`` returns one value per row)."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    day_number = seoul_day_number(ts_us)
    out = np.empty(len(ts_us), dtype=object)
    for n in np.unique(day_number):
        mine = day_number == n
        schedule = session_schedule(dt.date(1970, 1, 1) + dt.timedelta(days=int(n)))
        out[mine] = rule(schedule, ts_us[mine], *(np.asarray(c)[mine] for c in columns))
    return out


def session_labels_by_day(ts_us: np.ndarray) -> np.ndarray:
    """:meth:`SessionSchedule.session_labels` over any number of days."""
    return per_day(ts_us, SessionSchedule.session_labels)


@lru_cache(maxsize=4096)
def session_schedule(day: dt.date) -> SessionSchedule:
    """The day's schedule: regular, new-year late open (10:00) or CSAT (every session one hour
    later, off hours still ending at 18:00)."""
    shift = 1 if is_csat_day(day) else 0

    def at(h: int, m: int) -> dt.datetime:
        return dt.datetime(day.year, day.month, day.day, h, m, tzinfo=SEOUL)

    late_open = is_first_trading_day_of_year(day)
    return SessionSchedule(
        day=day,
        opening_auction_start=at(8 + shift, 30),
        indicative_from=at(8 + shift, 40),
        continuous_start=at(10, 0) if late_open else at(9 + shift, 0),
        closing_auction_start=at(15 + shift, 20),
        closing_auction_end=at(15 + shift, 30),
        post_close_start=at(15 + shift, 40),
        off_hours_start=at(16 + shift, 0),
        off_hours_end=at(18, 0),
    )


def random_end_delays_us(rng: np.random.Generator, count: int) -> np.ndarray:
    """Delays of random auction ends (랜덤엔드): uniform over 0..30 s, in microseconds."""
    return rng.integers(0, RANDOM_END_US + 1, size=count, dtype=np.int64)
