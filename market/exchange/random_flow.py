"""A plain random order stream for exercising the exchange (demo, benchmarks, property tests).

Not the synthetic market: no participants, no causes, just limit orders around a drifting mid,
some marketable, market orders and cancels of earlier orders, in round lots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.exchange import kernels as k

ROUND_LOTS = np.array([1, 5, 10, 20, 50, 100, 200, 500], dtype=np.int64)


@dataclass(frozen=True)
class OrderStream:
    ts: np.ndarray
    kind: np.ndarray
    side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int) -> OrderStream:
        return OrderStream(
            *(a[start:stop] for a in (self.ts, self.kind, self.side, self.price, self.qty, self.target))
        )


def random_order_stream(
    rng: np.random.Generator,
    grid: np.ndarray,
    n: int,
    t_start_us: int,
    t_end_us: int,
    *,
    first_order_id: int = 0,
    mid_index: int | None = None,
    spread_levels: float = 4.0,
    mid_step: float = 0.05,
    p_market: float = 0.03,
    p_cancel: float = 0.3,
) -> OrderStream:
    """``n`` order events with timestamps spread over [t_start, t_end); prices on ``grid``.

    Order ids follow the exchange's numbering (one id per event from ``first_order_id``), so the
    cancels target ids the exchange will actually have issued."""
    ts = np.sort(rng.integers(t_start_us, t_end_us, size=n))
    mid0 = len(grid) // 2 if mid_index is None else mid_index
    mid = (
        np.clip(mid0 + np.cumsum(rng.normal(0, mid_step, size=n)), 5, len(grid) - 6).round().astype(np.int64)
    )
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int64)
    # a passive order sits away from the mid on its own side; a few cross it (marketable limits)
    offset = np.floor(rng.exponential(spread_levels, size=n)).astype(np.int64) - 1
    idx = np.clip(mid - side * offset, 0, len(grid) - 1)
    u = rng.random(n)
    kind = np.where(u < p_market, k.K_MARKET, np.where(u < p_market + p_cancel, k.K_CANCEL, k.K_LIMIT))
    ids = first_order_id + np.arange(n)
    # a cancel targets a random earlier event of this stream (it may be filled already: rejected)
    back = np.minimum(rng.integers(1, 200, size=n), np.maximum(ids - first_order_id, 1))
    target = np.where(kind == k.K_CANCEL, np.maximum(ids - back, first_order_id), -1)
    qty = rng.choice(ROUND_LOTS, size=n, p=[0.1, 0.15, 0.25, 0.2, 0.15, 0.1, 0.04, 0.01])
    return OrderStream(ts=ts, kind=kind, side=side, price=grid[idx], qty=qty, target=target)
