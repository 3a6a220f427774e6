"""Small pure math over panel arrays, shared by the feature groups."""

from __future__ import annotations

import math

import numpy as np


def last(x: np.ndarray) -> float:
    return float(x[-1]) if len(x) else math.nan


def nan_last(x: np.ndarray) -> float:
    ok = x[~np.isnan(x)]
    return float(ok[-1]) if len(ok) else math.nan


def ratio(a: float, b: float) -> float:
    """a / b - 1, NaN when either is missing or b is not positive."""
    return a / b - 1.0 if b > 0 and not math.isnan(a) and not math.isnan(b) else math.nan


def slope(y: np.ndarray) -> float:
    """Least-squares slope per step over the non-NaN points (0 with fewer than 2)."""
    x = np.arange(len(y), dtype=np.float64)
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        return 0.0
    x, y = x[ok], y[ok]
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def nanmean(x: np.ndarray) -> float:
    ok = x[~np.isnan(x)]
    return float(ok.mean()) if len(ok) else math.nan


def filled_close(rows: dict[str, np.ndarray], fallback: float) -> np.ndarray:
    """The carried close, with the seconds before the window's first trade taken as that trade
    (or ``fallback`` when the rows have none)."""
    close = rows["close"]
    ok = np.flatnonzero(~np.isnan(close))
    if not len(ok):
        return np.full(len(close), fallback)
    out = close.copy()
    out[: ok[0]] = close[ok[0]]
    return out


def buy_ratio(buy: float, sell: float) -> float:
    return buy / (buy + sell) if buy + sell > 0 else 0.5


def strength(buy: float, sell: float) -> float:
    """체결강도 (buy over sell aggressor volume) on a log scale, finite when either side is 0."""
    return math.log((buy + 1.0) / (sell + 1.0))


def change(x: np.ndarray) -> float:
    """Last minus first published value in the rows (0 when nothing was published)."""
    ok = x[~np.isnan(x)]
    return float(ok[-1] - ok[0]) if len(ok) else 0.0


def recency(flags: np.ndarray, window: int) -> float:
    hits = np.flatnonzero(flags > 0)
    return float(len(flags) - hits[-1]) if len(hits) else float(window + 1)


def depth(rows: dict[str, np.ndarray], side: str, levels: int) -> np.ndarray:
    return np.nansum([rows[f"{side}_volume_{i}"] for i in range(1, levels + 1)], axis=0)


def sign(x: float) -> float:
    return float(np.sign(x)) if not math.isnan(x) else 0.0


def tail(rows: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {c: v[-n:] if n else v[:0] for c, v in rows.items()}
