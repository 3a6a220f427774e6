"""A data root's VI events and stock-days for the backtester: the events table, the instruments
(daily limits), the VI log's cause where the exchange (or the synthetic market) records one, and
the tapes, read once per stock-day."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from backtest.strategy import EventInfo
from backtest.tape import Tape, load_tape
from market.events.table import load_stock_days
from market.krx.clock import US_PER_SECOND, seoul_date, series_us


def load_events(
    events_path: Path, instruments_path: Path, start: dt.date | None = None, end: dt.date | None = None
) -> tuple[list[EventInfo], pd.DataFrame]:
    """Completed VI events (released, with an auction price) of ``start..end`` (inclusive), and the
    events table rows for grouping results (vi_type, direction)."""
    if not Path(events_path).exists():
        raise FileNotFoundError(f"{events_path}: no events table (run `vicap events` first)")
    table = pd.read_parquet(events_path)
    table = table[table["release_ts"].notna() & table["auction_price"].notna()].copy()
    table["release_us"] = series_us(table["release_ts"]).to_numpy()
    table["trigger_us"] = series_us(table["trigger_ts"]).to_numpy()
    table["day"] = [seoul_date(int(t)) for t in table["release_us"]]
    if start is not None:
        table = table[table["day"] >= start]
    if end is not None:
        table = table[table["day"] <= end]
    days = load_stock_days(instruments_path)
    infos = [
        EventInfo(
            r.event_id,
            r.stock_code,
            days[(r.stock_code, r.day)].market,
            r.day,
            int(r.trigger_us),
            int(r.release_us),
            int(r.direction),
            r.vi_type,
            int(r.auction_price),
        )
        for r in table.itertuples()
        if (r.stock_code, r.day) in days
    ]
    return infos, table.reset_index(drop=True)


def event_tapes(root: Path, instruments_path: Path, events: list[EventInfo], after_s: int) -> dict[str, Tape]:
    """Each event's stretch of its stock-day, from its release to ``after_s`` later (or to the
    uncross of a call auction running then: an exit that joined the closing call fills there),
    reading every stock-day once (a period's events interleave across stocks: a cache of whole
    days thrashes)."""
    days = load_stock_days(instruments_path)
    by_day: dict[tuple[str, dt.date], list[EventInfo]] = {}
    for ev in events:
        by_day.setdefault((ev.stock_code, ev.day), []).append(ev)
    out = {}
    with Progress(transient=True) as bar:
        task = bar.add_task("reading tapes", total=len(by_day))
        for key, evs in by_day.items():
            tape = load_tape(root, key[0], days[key])
            for ev in evs:
                out[ev.event_id] = tape.window(
                    ev.release_ts, tape.auction_end(ev.release_ts + after_s * US_PER_SECOND)
                )
            bar.advance(task)
    return out


class TapeCache:
    """Tapes of a dataset root by (stock, day), the most recent ``size`` kept in memory."""

    def __init__(self, root: Path, instruments_path: Path, size: int = 64) -> None:
        self.root = Path(root)
        self.days = load_stock_days(instruments_path)
        self.size = size
        self._cache: OrderedDict[tuple[str, dt.date], Tape] = OrderedDict()

    def __call__(self, ev: EventInfo) -> Tape:
        key = (ev.stock_code, ev.day)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tape = load_tape(self.root, ev.stock_code, self.days[key])
        self._cache[key] = tape
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return tape
