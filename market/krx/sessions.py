"""The KRX session schedule of a day (Asia/Seoul) and the session label of any instant, plus the
random ends (랜덤엔드) of call auctions. Source: ``shared/docs/krx-market-rules.md``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from market.krx.calendar import is_first_trading_day_of_year
from market.krx.clock import SEOUL, epoch_us, seoul_day_number

RANDOM_END_MAX_SECONDS = 30  # every call auction ends at a random moment within 30 s (랜덤엔드)


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


def session_labels_by_day(ts_us: np.ndarray) -> np.ndarray:
    """:meth:`SessionSchedule.session_labels` for µs timestamps spanning any number of days, each
    against its own day's schedule (Seoul has no daylight saving: a day is a fixed +09:00 offset)."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    day_number = seoul_day_number(ts_us)
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
