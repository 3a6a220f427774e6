"""Latency as it is: how long an order takes to reach the exchange (entry) and how long what the
exchange did takes to come back (response), as swappable models (hftbacktest's
``models/latency.rs``), and how a KIS account's REST calls are paced.

- :class:`ConstantLatency`: fixed each way (what ``ExecutionConfig``'s two numbers mean).
- :class:`LognormalLatency`: a right-skewed distribution. :data:`KIS_ORDER_LATENCY` is the
  default of ``vicap backtest``: KIS publishes no round-trip figures and none could be found in
  public sources, so it is set from the order of magnitude KIS REST users report (tens of
  milliseconds each way, the occasional several hundred): median 35 ms, a p99 about 180 ms. Measure
  your own with a paper session and replay it (:class:`RecordedLatency`).
- :class:`RecordedLatency`: drawn from a live journal's measured order round trips (sent -> the
  broker's acknowledgement; half each way).
- :class:`KisPacing`: a KIS account's REST budget (one call per 50 ms real, 500 ms paper), shared
  by orders, cancels and the daily order inquiry that reports fills, or the fill notice (H0STCNI0).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


class LatencySampler(Protocol):
    def entry(self) -> int:
        """µs from sending an order (or a cancel) to the exchange having it."""

    def response(self) -> int:
        """µs from the exchange doing something to our hearing of it."""


class LatencyModel(Protocol):
    def sampler(self, seed: int) -> LatencySampler: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ConstantLatency:
    entry_us: int = 30_000
    response_us: int = 30_000

    def sampler(self, seed: int) -> ConstantLatency:
        return self

    def entry(self) -> int:
        return self.entry_us

    def response(self) -> int:
        return self.response_us

    def describe(self) -> str:
        return f"{self.entry_us / 1e3:g} ms in, {self.response_us / 1e3:g} ms back"


class _Draws:
    def __init__(self, draw) -> None:
        self._draw = draw

    def entry(self) -> int:
        return self._draw()

    def response(self) -> int:
        return self._draw()


@dataclass(frozen=True)
class LognormalLatency:
    median_us: int = 35_000
    sigma: float = 0.7  # of the log: p99 = median x e^(2.33 sigma)
    floor_us: int = 5_000

    def sampler(self, seed: int) -> LatencySampler:
        rng = np.random.default_rng([seed, 0x1A7])
        mu = np.log(self.median_us)
        return _Draws(lambda: max(self.floor_us, int(rng.lognormal(mu, self.sigma))))

    def describe(self) -> str:
        p99 = self.median_us * np.exp(2.326 * self.sigma)
        return f"lognormal each way, median {self.median_us / 1e3:g} ms, p99 {p99 / 1e3:.0f} ms"


KIS_ORDER_LATENCY = LognormalLatency()


@dataclass(frozen=True)
class RecordedLatency:
    """One-way latencies (µs) measured live, drawn with replacement."""

    one_way_us: tuple[int, ...]
    source: str = "journal"

    def sampler(self, seed: int) -> LatencySampler:
        if not self.one_way_us:
            raise ValueError(f"{self.source}: no measured order round trip to replay")
        rng = np.random.default_rng([seed, 0x10A])
        values = np.asarray(self.one_way_us, np.int64)
        return _Draws(lambda: int(values[rng.integers(len(values))]))

    def describe(self) -> str:
        v = np.asarray(self.one_way_us)
        return (
            f"replayed from {self.source} ({len(v)} round trips, median one way {np.median(v) / 1e3:.0f} ms)"
        )

    @classmethod
    def from_journal(cls, path: Path) -> RecordedLatency:
        """Half of each order's measured round trip (sent -> acknowledged) in a live journal."""
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no journal")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT acked_ts - sent_ts FROM orders WHERE acked_ts IS NOT NULL AND acked_ts >= sent_ts"
            ).fetchall()
        except sqlite3.OperationalError as exc:  # a journal from before acknowledgement times
            raise ValueError(f"{path}: the journal records no acknowledgement times ({exc})") from exc
        finally:
            db.close()
        return cls(tuple(int(r[0]) // 2 for r in rows), source=str(path))


@dataclass(frozen=True)
class KisPacing:
    """A KIS account's REST calls, one per ``interval_us`` for orders, cancels and inquiries alike
    (EGW00201 otherwise); fills are seen by the daily order inquiry (주식일별주문체결조회), asked every
    ``poll_us`` while an order is open, or by the fill notice (H0STCNI0) pushed on the WebSocket."""

    interval_us: int = 50_000
    poll_us: int = 1_000_000
    fills_by: str = "inquiry"  # or "notice"

    def __post_init__(self) -> None:
        if self.fills_by not in ("inquiry", "notice"):
            raise ValueError(f"fills_by must be inquiry or notice, got {self.fills_by!r}")

    @classmethod
    def real(cls, fills_by: str = "inquiry") -> KisPacing:
        return cls(50_000, 1_000_000, fills_by)

    @classmethod
    def paper(cls, fills_by: str = "inquiry") -> KisPacing:
        return cls(500_000, 1_000_000, fills_by)

    def describe(self) -> str:
        return f"KIS REST paced one call per {self.interval_us / 1e3:g} ms, fills seen by the " + (
            "order inquiry every " + f"{self.poll_us / 1e6:g} s"
            if self.fills_by == "inquiry"
            else "fill notice"
        )
