"""vicap's one home for time: int64 microseconds since the Unix epoch (UTC) <-> Seoul dates and
times. Seoul keeps no daylight saving, so a KRX day is a fixed +09:00 offset. Every package
converts through these functions instead of its own helpers."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

SEOUL = ZoneInfo("Asia/Seoul")
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
_SEOUL_OFFSET_US = 9 * 3600 * US_PER_SECOND
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY = dt.date(1970, 1, 1)
# µs from the exchange to a retail recorder of the real-time feed, drawn uniformly where vicap
# simulates a feed (the synthetic market's receive times, the KIS exporter's frames)
FEED_LATENCY_RANGE_US = (3_000, 40_000)


def epoch_us(t: dt.datetime) -> int:
    """A tz-aware datetime as int64 microseconds since the Unix epoch (vicap's time unit)."""
    if t.tzinfo is None:
        raise ValueError(f"timestamp {t} has no time zone; vicap times are Asia/Seoul")
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def from_us(us: int) -> dt.datetime:
    """Microseconds since the epoch as a Seoul datetime."""
    return _EPOCH.astimezone(SEOUL) + dt.timedelta(microseconds=int(us))


def at_seoul(day: dt.date, time: dt.time) -> int:
    """The microseconds of a Seoul wall-clock ``time`` on ``day``."""
    return epoch_us(dt.datetime.combine(day, time, SEOUL))


def seoul_date(us: int) -> dt.date:
    """The Seoul calendar day of a microsecond timestamp (plain integers: the detector calls this
    once per event)."""
    return _EPOCH_DAY + dt.timedelta(days=(int(us) + _SEOUL_OFFSET_US) // US_PER_DAY)


def seoul_day_number(us: np.ndarray | int) -> np.ndarray | int:
    """Seoul days since 1970-01-01 of microsecond timestamps (vectorised)."""
    return (np.asarray(us, dtype=np.int64) + _SEOUL_OFFSET_US) // US_PER_DAY


def day_start_us(days: np.ndarray) -> np.ndarray:
    """Seoul midnight of each day number (:func:`seoul_day_number`) in microseconds."""
    return np.asarray(days, dtype=np.int64) * US_PER_DAY - _SEOUL_OFFSET_US


def hhmmss(us: int) -> str:
    """The Seoul wall-clock time as HHMMSS (KRX and KIS feeds stamp whole seconds so)."""
    return from_us(us).strftime("%H%M%S")


def parse_hhmmss(day: dt.date, text: str) -> int:
    """HHMMSS on ``day`` (Seoul) as microseconds; raises ValueError naming the text."""
    if len(text) != 6 or not text.isdigit():
        raise ValueError(f"time {text!r} is not HHMMSS")
    return at_seoul(day, dt.time(int(text[:2]), int(text[2:4]), int(text[4:])))


def seoul_dates(ts: pd.Series) -> pd.Series:
    """The Seoul calendar day of each tz-aware timestamp of a column."""
    return ts.dt.tz_convert(SEOUL).dt.date


def series_us(ts: pd.Series) -> pd.Series:
    """A tz-aware timestamp column as int64 microseconds since the epoch."""
    return (ts - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(microseconds=1)


def seoul_timestamps(us: pd.Series) -> pd.Series:
    """A column of microseconds since the epoch as Seoul timestamps (the tick files' type)."""
    return pd.to_datetime(us, unit="us", utc=True).dt.tz_convert(SEOUL)


def simulated_receive_us(exchange_us: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """When a feed delivers rows that happened at ``exchange_us`` (in row order): a latency drawn
    from :data:`FEED_LATENCY_RANGE_US` each, never before the previous row (a socket keeps order)."""
    latency = rng.integers(*FEED_LATENCY_RANGE_US, size=len(exchange_us))
    received = np.asarray(exchange_us, dtype=np.int64) + latency
    return np.maximum.accumulate(received) if len(received) else received
