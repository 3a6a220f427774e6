"""The tick dataset on disk (architecture.md's data contract): where a stock-day's tick file lives,
how the importers write one, and the accepted view of them. Every producer (the synthetic market,
the vendor and KIS importers) and every reader (events, panels, features) goes through here.

Raw tick files are never rewritten. Validation records its verdict beside them: each partition's
rejected rows in ``quarantine/ticks/<partition>`` (with their ``file_row_number`` and ``reason``) and
``validation_summary.json`` (each partition's size, rows and status). The accepted view is the raw
rows less the rejected ones, less the partitions that could not be read at all; a dataset with no
verdict is read whole, and one whose files changed after validation is refused."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from market.krx.clock import day_start_us, seoul_date, seoul_day_number
from market.krx.schema import INSTRUMENT_SCHEMA, TICK_SCHEMA, SchemaMismatch, check_table

# instrument flags of index and futures membership (the 1% closing band of expiry days)
MEMBERSHIP = ("kospi200", "kosdaq150", "futures_underlying")
SUMMARY_FILE = "ingest_summary.json"
VERDICT_FILE = "validation_summary.json"
# a partition validation set aside whole (unreadable, or not in the tick schema): not in the view
EXCLUDED = ("unreadable", "schema_mismatch")


class IngestError(ValueError):
    """A source cannot be ingested at all; the message names the file and the field."""


def tick_file(root: Path, day: dt.date, stock_code: str) -> Path:
    """``root/ticks/date=YYYY-MM-DD/<code>.parquet``: one stock-day."""
    return Path(root) / "ticks" / f"date={day.isoformat()}" / f"{stock_code}.parquet"


def is_yes(text: object) -> bool:
    """A membership flag as vendors and hand-written lists spell it: Y/N, 1/0, true/false."""
    return str(text).strip().upper() in ("Y", "1", "TRUE")


def read_stock_list(path: Path) -> pd.DataFrame:
    """A stock list CSV (stock_code, stock_name, market, kospi200; optional kosdaq150 and
    futures_underlying, Y/N; absent: not a member): the stocks a recording or a vendor file is of."""
    if not path.exists():
        raise IngestError(f"{path}: no stock list (stock_code, stock_name, market, kospi200)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = {"stock_code", "stock_name", "market", "kospi200"} - set(df.columns)
    if missing:
        raise IngestError(f"{path}: missing column(s) {sorted(missing)}")
    df["stock_code"] = df["stock_code"].str.strip().str.zfill(6)
    bad = ~df["stock_code"].str.fullmatch(r"\d{6}") | ~df["market"].isin(("KOSPI", "KOSDAQ"))
    if bad.any():
        row = df[bad].iloc[0]
        line = int(np.flatnonzero(bad)[0]) + 2
        raise IngestError(
            f"{path}: row {line}: bad stock_code {row['stock_code']!r} or market {row['market']!r}"
        )
    for m in MEMBERSHIP:
        df[m] = df[m].map(is_yes) if m in df else False
    return df[["stock_code", "stock_name", "market", *MEMBERSHIP]]


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


def tick_partitions(root: Path) -> list[Path]:
    """The stock-day tick files of a dataset root, in (date, code) order."""
    return sorted((Path(root) / "ticks").glob("date=*/*.parquet"))


def partition_name(path: Path) -> str:
    """``date=YYYY-MM-DD/<code>.parquet``: a partition's key in the verdict and the quarantine."""
    return f"{path.parent.name}/{path.name}"


def quarantine_file(root: Path, partition: str) -> Path:
    return Path(root) / "quarantine" / "ticks" / partition


class StaleVerdict(IngestError):
    """The tick files changed after validation: the verdict no longer describes them."""


def read_verdict(root: Path) -> dict | None:
    """Validation's summary of a dataset (None: never validated, or the data was written anew)."""
    path = Path(root) / VERDICT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def clear_verdict(root: Path) -> None:
    """Forget validation's verdict: a producer is writing the dataset's tick files anew."""
    (Path(root) / VERDICT_FILE).unlink(missing_ok=True)
    quarantined = Path(root) / "quarantine" / "ticks"
    if quarantined.exists():
        for path in quarantined.glob("date=*/*.parquet"):
            path.unlink()


def _view(root: Path) -> tuple[list[Path], list[Path], bool]:
    """(every partition on disk, those the accepted view reads, whether a verdict exists), from one
    listing and one reading of the verdict. Refuses (:class:`StaleVerdict`, naming the partition)
    a verdict that no longer matches the files."""
    files = tick_partitions(root)
    verdict = read_verdict(root)
    if verdict is None:
        return files, files, False
    judged = verdict["partitions"]
    on_disk = {partition_name(f): f for f in files}
    for name in sorted(on_disk.keys() ^ judged.keys()):
        where = "is new" if name in on_disk else "is gone"
        raise StaleVerdict(f"{Path(root) / 'ticks' / name} {where} since validation: run `vicap validate`")
    for name, path in on_disk.items():
        if path.stat().st_size != judged[name]["bytes"]:
            raise StaleVerdict(f"{path} changed since validation: run `vicap validate`")
    return files, [path for name, path in on_disk.items() if judged[name]["status"] not in EXCLUDED], True


def accepted_partitions(root: Path) -> list[Path]:
    """The partitions the accepted view reads: every one when the dataset has no verdict; those not
    set aside whole when it has."""
    return _view(root)[1]


def ticks_source(root: Path) -> str:
    """A DuckDB FROM expression over the accepted tick rows of ``root``, each with its
    ``file_row_number`` (its order in its stock-day)."""
    every, files, validated = _view(root)
    if not files:
        raise IngestError(f"{Path(root) / 'ticks'}: no tick partitions to read")
    listed = (
        f"'{ticks_glob(root)}'"
        if len(files) == len(every)
        else "[" + ", ".join(f"'{f}'" for f in files) + "]"
    )
    ticks = f"read_parquet({listed}, file_row_number = true, union_by_name = true, hive_partitioning = false"
    if not validated or not any((Path(root) / "quarantine" / "ticks").glob("date=*/*.parquet")):
        return f"{ticks})"
    return f"""(SELECT t.* EXCLUDE (filename) FROM {ticks}, filename = true) t
        ANTI JOIN read_parquet('{Path(root) / "quarantine" / "ticks" / "*" / "*.parquet"}',
                               union_by_name = true, hive_partitioning = false) q
        ON q.partition = regexp_extract(t.filename, '[^/]+/[^/]+$')
           AND q.file_row_number = t.file_row_number)"""


def _accepted_rows(root: Path, path: Path, columns: list[str] | None, validated: bool) -> pa.Table:
    table = pq.read_table(path, columns=columns)
    rejected = quarantine_file(root, partition_name(path))
    if not validated or not rejected.exists():
        return table
    rows = pq.read_table(rejected, columns=["file_row_number"])["file_row_number"]
    keep = pc.invert(pc.is_in(pa.array(np.arange(table.num_rows)), value_set=rows.combine_chunks()))
    return table.filter(keep)


def read_accepted(root: Path, path: Path, columns: list[str] | None = None) -> pa.Table:
    """One partition's accepted rows, in file order."""
    return _accepted_rows(root, path, columns, read_verdict(root) is not None)


def accepted_tables(root: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Each accepted partition's accepted rows, in (date, code) order, the verdict read once."""
    _, files, validated = _view(root)
    for path in files:
        yield _accepted_rows(root, path, columns, validated)


def write_ticks(
    data: pd.DataFrame | pa.Table, out: Path, extra: tuple[pa.Field, ...] = ()
) -> tuple[int, int]:
    """Write ``out/ticks/date=.../<code>.parquet``, each file in row order; returns (stock-days,
    rows)."""
    clear_verdict(out)  # a verdict on earlier files says nothing of these
    schema = pa.schema([*TICK_SCHEMA, *extra])
    if isinstance(data, pd.DataFrame):
        data = pa.Table.from_pandas(data[schema.names], schema=schema, preserve_index=False)
    table = data.select(schema.names).cast(schema)
    days = seoul_day_number(pc.cast(table["timestamp"], pa.int64()).to_numpy())
    codes = pc.dictionary_encode(table["stock_code"]).combine_chunks()
    names = codes.dictionary.to_pylist()
    rank = np.argsort(np.argsort(names))[codes.indices.to_numpy()]
    order = np.lexsort((np.arange(table.num_rows), rank, days))  # by day, then code; rows kept in order
    key = days[order] * len(names) + rank[order]
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    for lo, hi in pairwise(bounds.tolist()):
        part = table.take(order[lo:hi])
        path = tick_file(out, seoul_date(day_start_us(days[order[lo]])), part["stock_code"][0].as_py())
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)
    return len(bounds) - 1, table.num_rows


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on Seoul time (date_trunc and CAST AS DATE are KRX days and seconds)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Seoul'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con
