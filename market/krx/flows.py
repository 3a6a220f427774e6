"""Investor flows (투자자별 매매동향) as the market learns them: intraday per-stock nets are
provisional broker estimates (잠정치) published a few times a day (krx-market-rules.md, "Program
trading and investor flows"). A value is known from its publication time, never from the trade
time: a feature that saw it earlier would leak.

Used by the synthetic market (which publishes at these times) and by the vendor ingest (which
holds a value a vendor file shows between publications back to the next one).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from market.krx.clock import US_PER_SECOND, at_seoul

INVESTOR_PUBLICATIONS = ((9, 30), (10, 0), (11, 20), (13, 20), (14, 30))  # provisional 잠정치 times
# a vendor stamps a publication with the first tick after it: this much later is still on time
PUBLICATION_GRACE_US = 60 * US_PER_SECOND


def publication_times_us(day: dt.date) -> np.ndarray:
    return np.array([at_seoul(day, dt.time(h, m)) for h, m in INVESTOR_PUBLICATIONS], dtype=np.int64)


def as_published(
    times_us: np.ndarray, values: np.ndarray, publications_us: np.ndarray
) -> tuple[np.ndarray, int]:
    """One stock-day's investor net as the market knew it at each row (rows in time order), and
    how many changes came between publications. A change within the grace after a publication is
    that publication's; a change at any other time is held back to the next publication (the
    latest value before a publication is the one it publishes); before the first it is 0."""
    values = np.asarray(values, dtype=np.int64)
    changes = np.flatnonzero(values != np.r_[0, values[:-1]])
    if not len(changes):
        return values, 0
    at = times_us[changes]
    slot = np.searchsorted(publications_us, at, side="right") - 1  # the latest publication <= t
    on_time = (slot >= 0) & (at - publications_us[np.maximum(slot, 0)] <= PUBLICATION_GRACE_US)
    upcoming = np.r_[publications_us, np.iinfo(np.int64).max]
    effective = np.where(on_time, at, upcoming[slot + 1])
    known = np.searchsorted(effective, times_us, side="right") - 1  # the latest change in effect
    held = np.where(known >= 0, values[changes[np.maximum(known, 0)]], 0)
    return held, int((~on_time).sum())
