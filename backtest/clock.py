"""Two clocks for every row, as hftbacktest keeps them: the exchange's time (``exch``, when the
row happened at KRX: what our orders are matched against) and the local time (``local``, when the
row reached us: the only time a strategy, a decision or the live executor may see it).

What the data gives decides how each is found:
- a receive time (KIS recordings, the synthetic market, the live feed): ``local`` is it, and the
  exchange time is the receive time less the feed latency, clamped into the interval the
  exchange's own stamp allows (a KIS HHMMSS stamp S means [S, S + 1 s));
- no receive time (most vendor files): the exchange time is the latest instant the stamp allows
  (a whole-second stamp S may be a print at S.999) and ``local`` is that plus the feed latency.

A whole-second stamp is an interval, never an instant to look into: at S.000 nothing stamped S is
visible yet unless it was received by then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.krx.clock import US_PER_SECOND


@dataclass(frozen=True)
class FeedClock:
    """``feed_latency_us``: exchange to us (what a receive time is reduced by to estimate the
    exchange's time, and what a row without one is seen after). ``stamp_us``: how much time one
    exchange stamp covers (1 µs: exact; 1 s: KIS's HHMMSS); 0 decides per stock-day (every stamp a
    whole second: 1 s, else exact)."""

    feed_latency_us: int = 20_000
    stamp_us: int = 0

    def __post_init__(self) -> None:
        if self.feed_latency_us < 0 or self.stamp_us < 0:
            raise ValueError(f"feed latency and stamp resolution must not be negative: {self}")

    def resolution(self, stamps: np.ndarray) -> int:
        """µs one stamp of ``stamps`` covers."""
        if self.stamp_us:
            return self.stamp_us
        return US_PER_SECOND if len(stamps) and not np.any(stamps % US_PER_SECOND) else 1


def two_clocks(
    stamps: np.ndarray, received: np.ndarray | None, clock: FeedClock, resolution: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(exchange, local) µs of rows in feed order from their exchange ``stamps`` and receive times
    (``received``: None, or -1 where a row has none). Both come out non-decreasing (a socket
    delivers in order; a stamp never goes back), and no row is seen before it happened."""
    stamps = np.asarray(stamps, dtype=np.int64)
    width = (clock.resolution(stamps) if resolution is None else resolution) - 1
    latest = stamps + width  # the last instant the stamp allows
    if received is None:
        exch, local = latest, latest + clock.feed_latency_us
    else:
        received = np.asarray(received, dtype=np.int64)
        known = received >= 0
        exch = np.where(known, np.clip(received - clock.feed_latency_us, stamps, latest), latest)
        local = np.where(known, received, latest + clock.feed_latency_us)
    exch = np.maximum.accumulate(exch) if len(exch) else exch
    local = np.maximum.accumulate(np.maximum(local, exch)) if len(local) else local
    return exch, local


def one_row(stamp: int, received: int | None, clock: FeedClock, resolution: int) -> tuple[int, int]:
    """:func:`two_clocks` of one row (the live feed's), before the running maximum."""
    latest = stamp + resolution - 1
    if received is None or received < 0:
        return latest, latest + clock.feed_latency_us
    exch = min(max(received - clock.feed_latency_us, stamp), latest)
    return exch, max(received, exch)
