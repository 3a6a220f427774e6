"""Crafted tapes: a few rows of trades and books, written as a user's data would be (tick columns),
read through :func:`backtest.tape.tape_from_table`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from backtest.clock import FeedClock
from backtest.tape import COLUMNS, LEVELS, RECV_COLUMN, tape_from_table
from market import krx
from market.events.detector import StockDay

DAY = dt.date(2024, 6, 3)
T0 = krx.at_seoul(DAY, dt.time(10, 0))  # µs


def row(
    ms: float,
    kind: str = "book",
    price: int = 0,
    volume: int = 0,
    side: int = 0,
    bids: list[tuple[int, int]] = (),
    asks: list[tuple[int, int]] = (),
    vi_status: int = 0,
    session: str = "continuous",
    program: int = 0,
    cum_volume: int = 0,
    recv_ms: float | None = None,
) -> dict:
    r = {
        "timestamp": T0 + int(ms * 1000),
        RECV_COLUMN: None if recv_ms is None else T0 + int(recv_ms * 1000),
        "event_type": kind,
        "price": price,
        "volume": volume,
        "cum_volume": cum_volume,
        "side": side,
        "program_net_buy": program,
        "vi_status": vi_status,
        "session": session,
    }
    for name, levels in (("bid", bids), ("ask", asks)):
        for i in range(LEVELS):
            p, q = levels[i] if i < len(levels) else (0, 0)
            r[f"{name}_price_{i + 1}"], r[f"{name}_volume_{i + 1}"] = p, q
    return r


# crafted rows are stamped exactly and seen the instant they happen, unless a test says otherwise
EXACT = FeedClock(feed_latency_us=0, stamp_us=1)


def make_tape(
    rows: list[dict],
    base_price: int = 10_000,
    market: str = "KOSPI",
    day: dt.date = DAY,
    clock: FeedClock = EXACT,
    kospi200: bool = False,
):
    df = pd.DataFrame(rows)
    columns = list(COLUMNS)
    for c in ("timestamp", RECV_COLUMN):
        df[c] = pd.to_datetime(df[c], unit="us", utc=True).dt.tz_convert("Asia/Seoul")
    if df[RECV_COLUMN].notna().any():
        columns.append(RECV_COLUMN)
    table = pa.Table.from_pandas(df[columns], preserve_index=False)
    return tape_from_table(table, "005930", StockDay(day, market, kospi200, base_price), clock)
