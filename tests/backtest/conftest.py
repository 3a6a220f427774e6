"""Crafted tapes: a few rows of trades and books, written as a user's data would be (tick columns),
read through :func:`backtest.tape.tape_from_table`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

from backtest.tape import COLUMNS, LEVELS, tape_from_table
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
) -> dict:
    r = {
        "timestamp": T0 + int(ms * 1000),
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


def make_tape(rows: list[dict], base_price: int = 10_000, market: str = "KOSPI", day: dt.date = DAY):
    df = pd.DataFrame(rows)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="us", utc=True).dt.tz_convert("Asia/Seoul")
    table = pa.Table.from_pandas(df[COLUMNS], preserve_index=False)
    return tape_from_table(table, "005930", StockDay(day, market, False, base_price))
