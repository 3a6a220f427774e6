"""What the feature functions read: the event as known at its release (:class:`EventInfo`, with
the VIs before it from :class:`VIHistory`) and its 1-second panel as float arrays."""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from feature_repo.features.spec import MARKET_VI_WINDOW_S, US


@dataclass(frozen=True)
class EventInfo:
    """What is known of a VI at its release, besides its panel."""

    event_id: str
    stock_code: str
    day: dt.date
    market: str
    kospi200: bool
    base_price: int
    trigger_ts: int  # µs since the epoch
    release_ts: int
    vi_type: str
    direction: int
    static_ref: int
    dynamic_ref: int
    trigger_price: int
    auction_price: int | None
    auction_volume: int
    vis_today: int  # earlier VIs in this stock today
    last_release_ts: int | None  # this stock's previous VI release today
    market_vis_10m: int  # VIs in any stock triggered in the 10 minutes before


class VIHistory:
    """The VIs seen so far, answering what an event may know of the VIs before it: batch adds the
    events table's rows, live adds its detector's VIs at their trigger (and their release when it
    comes) and other stocks' VIs as the exchange's VI-status notices bring them."""

    def __init__(self) -> None:
        self._by_stock_day: dict[tuple[str, dt.date], dict[int, int | None]] = defaultdict(dict)
        self._triggers: list[int] = []  # every stock's, sorted

    def add(self, stock_code: str, day: dt.date, trigger_ts: int, release_ts: int | None = None) -> None:
        known = self._by_stock_day[(stock_code, day)]
        if trigger_ts not in known:
            bisect.insort(self._triggers, trigger_ts)
        known[trigger_ts] = release_ts if release_ts is not None else known.get(trigger_ts)

    def info(self, ev: dict, stock_day: object) -> EventInfo:
        """``ev``: an events.parquet row with µs ints; ``stock_day``: ``market.events.detector.StockDay``."""
        trigger = ev["trigger_ts"]
        earlier = {
            t: r for t, r in self._by_stock_day[(ev["stock_code"], stock_day.day)].items() if t < trigger
        }
        released = [r for r in earlier.values() if r is not None and r <= trigger]
        lo = bisect.bisect_left(self._triggers, trigger - MARKET_VI_WINDOW_S * US)
        hi = bisect.bisect_left(self._triggers, trigger)
        return EventInfo(
            event_id=ev["event_id"],
            stock_code=ev["stock_code"],
            day=stock_day.day,
            market=stock_day.market,
            kospi200=stock_day.kospi200,
            base_price=stock_day.base_price,
            trigger_ts=trigger,
            release_ts=ev["release_ts"],
            vi_type=ev["vi_type"],
            direction=int(ev["direction"]),
            static_ref=ev["static_ref"],
            dynamic_ref=ev["dynamic_ref"],
            trigger_price=ev["trigger_price"],
            auction_price=ev["auction_price"],
            auction_volume=ev["auction_volume"],
            vis_today=len(earlier),
            last_release_ts=max(released) if released else None,
            market_vis_10m=hi - lo,
        )


def decision_time_us(release_ts: int, offset_s: int) -> int:
    """End of the ``offset_s``-th second after the release (µs since the epoch)."""
    return (release_ts // US) * US + (offset_s + 1) * US


_PANEL_NUMERIC = [
    "offset_s", "since_release_s", "high", "low", "close", "vwap", "volume", "buy_volume",
    "sell_volume", "trade_count", "program_net_buy", "institution_net", "foreign_net", "individual_net",
    "news_flag", "disclosure_flag", "vi_status", "indicative_price", "indicative_volume", "spread",
    "imbalance_l1", "imbalance_l5", "imbalance_l10", "program_net_buy_change",
    *(f"{side}_volume_{i}" for side in ("bid", "ask") for i in range(1, 11)),
]  # fmt: skip
PANEL_INPUTS = ["event_id", *_PANEL_NUMERIC]


def panel_arrays(panels: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Per event, the panel columns the features read, as float arrays (null -> NaN), in second order."""
    t = panels.select(PANEL_INPUTS)
    ids = t["event_id"].to_numpy(zero_copy_only=False)
    cols = {c: t[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in _PANEL_NUMERIC}
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(ids)]
    return {ids[a]: {c: v[a:b] for c, v in cols.items()} for a, b in zip(starts, ends, strict=True)}


def rows_where(panel: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """The panel's rows where ``mask`` holds."""
    return {c: v[mask] for c, v in panel.items()}
