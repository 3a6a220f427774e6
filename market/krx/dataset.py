"""The tick dataset on disk (architecture.md's data contract): where a stock-day's tick file lives,
how the importers write one, and DuckDB's view of them. Every producer (the synthetic market, the
vendor and KIS importers) and every reader (events, panels, features) goes through here."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market.krx.schema import INSTRUMENT_SCHEMA, TICK_SCHEMA, SchemaMismatch, check_table

# instrument flags of index and futures membership (the 1% closing band of expiry days)
MEMBERSHIP = ("kospi200", "kosdaq150", "futures_underlying")
SUMMARY_FILE = "ingest_summary.json"


class IngestError(ValueError):
    """A source cannot be ingested at all; the message names the file and the field."""


def tick_file(root: Path, day: dt.date, stock_code: str) -> Path:
    """``root/ticks/date=YYYY-MM-DD/<code>.parquet``: one stock-day."""
    return Path(root) / "ticks" / f"date={day.isoformat()}" / f"{stock_code}.parquet"


def is_yes(text: object) -> bool:
    """A membership flag as vendors and hand-written lists spell it: Y/N, 1/0, true/false."""
    return str(text).strip().upper() in ("Y", "1", "TRUE")


def read_instruments(path: Path) -> pa.Table:
    """``instruments.parquet``, checked against its schema (the error names the column)."""
    table = pq.read_table(path)
    try:
        check_table(table, INSTRUMENT_SCHEMA, source=str(path))
    except SchemaMismatch as exc:
        raise IngestError(str(exc)) from exc
    return table


def read_summary(root: Path) -> dict:
    """What the importer recorded of a dataset (``ingest_summary.json``; {} for generated data)."""
    path = Path(root) / SUMMARY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def has_vi_flags(root: Path) -> bool:
    """Whether a dataset's ticks carry the exchange's VI flags (``vi_status``): generated data and
    KIS recordings do, a vendor file only when its mapping names them."""
    return bool(read_summary(root).get("has_vi_flags", True))


def ticks_glob(root: Path) -> str:
    """The tick files of a dataset root, for DuckDB's read_parquet."""
    return str(Path(root) / "ticks" / "*" / "*.parquet")


def write_ticks(df: pd.DataFrame, out: Path, extra: tuple[pa.Field, ...] = ()) -> tuple[int, int]:
    """Write ``out/ticks/date=.../<code>.parquet`` in row order; returns (stock-days, rows)."""
    schema = pa.schema([*TICK_SCHEMA, *extra])
    stock_days = rows = 0
    for (day, code), g in df.groupby([df["timestamp"].dt.date, "stock_code"], sort=True):
        table = pa.Table.from_pandas(g[schema.names], schema=schema, preserve_index=False)
        path = tick_file(out, day, code)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        stock_days += 1
        rows += table.num_rows
    return stock_days, rows


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on Seoul time (date_trunc and CAST AS DATE are KRX days and seconds)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Seoul'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con
