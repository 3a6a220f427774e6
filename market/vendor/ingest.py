"""Vendor tick files in, the vicap tick dataset out: Parquet or CSV (UTF-8 or CP949, Korean
headers) in any layout, through a YAML column mapping.

Rows that cannot be read (a bad timestamp, a non-numeric or missing price, a stock code that is not
six digits, an unknown value) go to ``DIR/quarantine/ingest/<source>.parquet`` with the raw text
and a reason; input rows = accepted + quarantined, always.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field

from market import krx
from market.krx.dataset import (
    MEMBERSHIP,
    SUMMARY_FILE,
    IngestError,
    is_yes,
    read_instruments,
    write_ticks,
)
from market.krx.schema import INSTRUMENT_SCHEMA, SIDE_UNKNOWN, SIDES, TICK_SCHEMA, VI_TYPES

ENCODINGS = ("utf-8", "cp949")
DEFAULTS: dict[str, object] = {
    "event_type": "trade",
    "side": SIDE_UNKNOWN,  # a file without sides: never taken for single-price prints
    "vi_status": 0,
    "vi_type": "none",
    "vi_reason": "",
    "news_flag": False,
    "disclosure_flag": False,
    "program_net_buy": 0,
    "institution_net": 0,
    "foreign_net": 0,
    "individual_net": 0,
}
INTEGER_COLUMNS = [f.name for f in TICK_SCHEMA if pa.types.is_integer(f.type)]


class TimestampSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str]  # joined with a space before parsing
    format: str  # strptime format of the joined text, e.g. "%Y%m%d %H%M%S%f"
    timezone: str = "Asia/Seoul"


class Mapping(BaseModel):
    """A vendor layout: which source column feeds each vicap column, and value translations."""

    model_config = ConfigDict(extra="forbid")
    name: str
    encoding: str = "auto"  # utf-8 | cp949 | auto (try both)
    timestamp: TimestampSpec
    columns: dict[str, str]  # vicap column -> source column
    # vicap column -> {source text: value}; a side may be named (buy, sell, auction, unknown)
    values: dict[str, dict[str, object]] = Field(default_factory=dict)
    base_price: str | None = None  # source column of 기준가 (else the previous day's last trade)
    # source columns of index and futures membership (Y/N, 1/0, true/false); absent: not a member
    kospi200: str | None = None
    kosdaq150: str | None = None
    futures_underlying: str | None = None  # 주식선물 기초자산

    def instrument_columns(self) -> dict[str, str]:
        """vicap instrument column -> source column, for those the layout carries."""
        named = {"base_price": self.base_price, **{m: getattr(self, m) for m in MEMBERSHIP}}
        return {k: v for k, v in named.items() if v}

    def translations(self) -> dict[str, dict[str, object]]:
        """``values`` with side names as their codes: {vicap column: {source text: vicap value}}."""
        return {
            column: {str(text): SIDES.get(v, v) if column == "side" else v for text, v in table.items()}
            for column, table in self.values.items()
        }

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise IngestError(f"{path}: not a valid column mapping: {exc}") from exc


@dataclass
class IngestReport:
    files: int = 0
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    stock_days: int = 0


def read_source(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The source file as text columns (nothing converted yet)."""
    raw = _read_text_columns(path, mapping)
    if raw.empty:
        raise IngestError(f"{path}: no rows (a header at most)")
    return raw


def _read_text_columns(path: Path, mapping: Mapping) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: empty file")
    if path.suffix.lower() == ".parquet":
        try:
            return pq.read_table(path).to_pandas().astype(str)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"{path}: unreadable Parquet ({exc})") from exc
    encodings = ENCODINGS if mapping.encoding == "auto" else (mapping.encoding,)
    for enc in encodings:
        try:
            return pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError as exc:
            raise IngestError(f"{path}: empty file") from exc
    raise IngestError(f"{path}: text is neither {' nor '.join(encodings)}")


def convert(
    raw: pd.DataFrame, mapping: Mapping, source: str, known_codes: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows in the tick schema's types, quarantined raw rows with a ``reason``); with
    ``known_codes``, a stock outside them is quarantined too."""
    needed = [*mapping.timestamp.columns, *mapping.columns.values(), *mapping.instrument_columns().values()]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise IngestError(
            f"{source}: column(s) {missing} named by mapping {mapping.name!r} are not in the file"
        )
    out = pd.DataFrame(index=raw.index)
    reason = pd.Series("", index=raw.index)
    translations = mapping.translations()

    def reject(mask: pd.Series, why: str) -> None:
        reason[mask & (reason == "")] = why

    text = raw[mapping.timestamp.columns].astype(str).agg(" ".join, axis=1)
    ts = pd.to_datetime(text, format=mapping.timestamp.format, errors="coerce")
    reject(ts.isna(), f"timestamp: not {mapping.timestamp.format!r}")
    out["timestamp"] = ts.dt.tz_localize(mapping.timestamp.timezone, nonexistent="NaT", ambiguous="NaT")
    for column, src in mapping.columns.items():
        values = raw[src].astype(str).str.strip()
        if column in translations:
            table = translations[column]
            unknown = ~values.isin(table.keys())
            reject(unknown, f"{column}: unknown value in {src!r}")
            values = values.map(table)
        if column in INTEGER_COLUMNS:
            number = pd.to_numeric(values.astype(str).str.replace(",", "", regex=False), errors="coerce")
            reject(number.isna() | (number != np.floor(number)), f"{column}: not an integer in {src!r}")
            out[column] = number
        else:
            out[column] = values
    if "stock_code" in out:
        code = out["stock_code"].astype(str).str.zfill(6)
        reject(~code.str.fullmatch(r"\d{6}"), "stock_code: not a 6-digit code")
        if known_codes is not None:
            reject(~code.isin(known_codes), "stock_code: not in the instruments file")
        out["stock_code"] = code
    if "price" in out:
        reject(out["price"] < 0, "price: negative")
    if "volume" in out:
        reject(out["volume"] < 0, "volume: negative")
    if "vi_type" in out:
        reject(~out["vi_type"].isin(VI_TYPES), "vi_type: unknown")
    bad = reason != ""
    quarantined = raw[bad].copy()
    quarantined["reason"] = reason[bad]
    quarantined["source"] = source
    return out[~bad], quarantined


def _complete(df: pd.DataFrame) -> pd.DataFrame:
    """Fill the columns a source lacks: defaults, an empty book, the session from the clock,
    cum_volume as the running sum of trade volume."""
    for name, value in DEFAULTS.items():
        if name not in df:
            df[name] = value
    for f in TICK_SCHEMA:
        if f.name.startswith(("bid_", "ask_")) and f.name not in df:
            df[f.name] = 0
    # file order within a stock is kept: a row out of time order is for validation to flag
    # (timestamps_non_decreasing), not for the importer to hide
    df = df.sort_values("stock_code", kind="stable")
    if "cum_volume" not in df:
        traded = df["volume"].where(df["event_type"] == "trade", 0)
        df["cum_volume"] = traded.groupby([df["stock_code"], df["timestamp"].dt.date]).cumsum()
    if "session" not in df:
        df["session"] = krx.session_labels_by_day(krx.series_us(df["timestamp"]).to_numpy())
    return df


def ingest(sources: list[Path], mapping: Mapping, out: Path, instruments: Path | None = None) -> IngestReport:
    """Read ``sources``, write ``out/ticks/date=.../<code>.parquet``, ``out/instruments.parquet``
    and ``out/quarantine/ingest/``; returns the counts."""
    report = IngestReport()
    frames = []
    known = set(read_instruments(instruments)["stock_code"].to_pylist()) if instruments else None
    for path in sources:
        raw = read_source(path, mapping)
        report.files += 1
        report.rows_in += len(raw)
        good, bad = convert(raw, mapping, path.name, known)
        for column, source in mapping.instrument_columns().items():
            good[column] = raw.loc[good.index, source]
        frames.append(good)
        if len(bad):
            target = out / "quarantine" / "ingest" / f"{path.stem}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(bad.astype(str), preserve_index=False), target)
            report.reasons.update(bad["reason"])
        report.rows_quarantined += len(bad)
        report.rows_accepted += len(good)
    if report.rows_in != report.rows_accepted + report.rows_quarantined:
        raise AssertionError("ingest lost rows: counts do not add up")
    if not report.rows_accepted:
        names = ", ".join(p.name for p in sources)
        raise IngestError(f"{names}: no row could be read ({report.rows_quarantined} quarantined)")
    df = _complete(pd.concat(frames, ignore_index=True))
    inst = _instruments(df, instruments)
    report.stock_days, _ = write_ticks(df, out)
    pq.write_table(inst, out / "instruments.parquet")
    (out / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "mapping": mapping.name,
                "files": report.files,
                "rows_in": report.rows_in,
                "rows_accepted": report.rows_accepted,
                "rows_quarantined": report.rows_quarantined,
                "reasons": report.reasons,
                "has_vi_flags": "vi_status" in mapping.columns,
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    return report


def to_vendor_layout(ticks: pd.DataFrame, mapping: Mapping, instrument: dict) -> pd.DataFrame:
    """Ticks of one stock-day (``instrument``: its instruments.parquet row) in ``mapping``'s vendor
    layout, the inverse of :func:`convert`: for round-trip checks and for handing data to tools
    that read vendor exports. A value several source texts translate to is written as the first."""
    inverse: dict[str, dict] = {}
    for column, table in mapping.translations().items():
        for text, value in table.items():
            inverse.setdefault(column, {}).setdefault(value, text)
    out = pd.DataFrame(index=ticks.index)
    local = ticks["timestamp"].dt.tz_convert(mapping.timestamp.timezone)
    # the timestamp columns are joined with a space before parsing: split the format the same way
    for column, fmt in zip(mapping.timestamp.columns, mapping.timestamp.format.split(" "), strict=True):
        out[column] = local.dt.strftime(fmt)
    for column, source in mapping.columns.items():
        out[source] = ticks[column].map(inverse[column]) if column in inverse else ticks[column]
    for column, source in mapping.instrument_columns().items():
        value = instrument[column]
        out[source] = ("Y" if value else "N") if column in MEMBERSHIP else value
    return out


def _instruments(df: pd.DataFrame, given: Path | None) -> pa.Table:
    if given is not None:
        return read_instruments(given)
    rows = []
    day = df["timestamp"].dt.date
    for code, g in df.groupby("stock_code"):
        prev_close = None
        for d, gd in g.groupby(day[g.index]):
            first = gd.iloc[0]
            if "base_price" in gd and str(first["base_price"]).strip() not in ("", "nan"):
                base = int(float(str(first["base_price"]).replace(",", "")))
            elif prev_close is not None:
                base = prev_close
            else:
                raise IngestError(
                    f"stock {code} on {d}: no 기준가 (map `base_price:`) and no previous day "
                    f"to take it from; pass --instruments"
                )
            rows.append(
                {
                    "date": d,
                    "stock_code": code,
                    "stock_name": str(first["stock_name"]),
                    "market": str(first["market"]),
                    **{m: is_yes(first.get(m, "N")) for m in MEMBERSHIP},
                    "base_price": base,
                }
            )
            trades = gd[gd["event_type"] == "trade"]
            prev_close = int(trades["price"].iloc[-1]) if len(trades) else base
    return pa.Table.from_pylist(rows, schema=INSTRUMENT_SCHEMA)
