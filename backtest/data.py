"""A data root's VI events for the backtester: the events table, the instruments (daily limits) and
the VI log's cause where the exchange (or the synthetic market) records one. Their tapes come from
:class:`backtest.tapestore.TapeStore`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from backtest.strategy import EventInfo
from market.events.table import load_stock_days
from market.krx.clock import seoul_date, series_us


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
