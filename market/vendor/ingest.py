"""Vendor tick files in, the vicap tick dataset out: Parquet or CSV (UTF-8 or CP949, Korean
headers, with or without a header row) through the YAML mappings of :mod:`market.vendor.mapping`,
or vicap's own tick schema without one.

Rows that cannot be read (a bad timestamp, a non-numeric or missing price, a stock code that is not
six digits, an unknown value, a row the vendor flags for exclusion) go to
``DIR/quarantine/ingest/<file>.parquet`` with the raw text and a reason; input rows = accepted +
quarantined, always. A layout's VI event file (``kind: vi_events``) becomes ``vi_log.parquet``.
Investor nets are kept only as of their publication times (:mod:`market.krx.flows`).
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

from market import krx
from market.krx.dataset import (
    MEMBERSHIP,
    SUMMARY_FILE,
    IngestError,
    is_yes,
    read_instruments,
    read_stock_list,
    write_ticks,
)
from market.krx.flows import as_published, publication_times_us
from market.krx.schema import INSTRUMENT_SCHEMA, SIDE_UNKNOWN, SIDES, TICK_SCHEMA, VI_LOG_SCHEMA, VI_TYPES
from market.vendor.mapping import Mapping, Source, filename_value, load_layout

__all__ = ["IngestReport", "Mapping", "convert", "ingest", "load_layout", "to_vendor_layout"]

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
VI_INTEGER_COLUMNS = ("trigger_price", "static_ref", "dynamic_ref")
INVESTOR_COLUMNS = ("institution_net", "foreign_net", "individual_net")
FIRST = ("market", "stock_code")  # read before the rest: a unit may depend on the market


@dataclass
class IngestReport:
    files: int = 0
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    stock_days: int = 0
    vi_events: int = 0  # rows of VI event files (counted in rows_in too)
    vi_log_rows: int = 0
    investor_changes_held: Counter = field(default_factory=Counter)  # column -> changes held back


def read_source(path: Path, mapping: Mapping) -> pd.DataFrame:
    """The source file as text columns (nothing converted yet)."""
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: empty file")
    if path.suffix.lower() == ".parquet":
        try:
            raw = pq.read_table(path).to_pandas().astype(str)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"{path}: unreadable Parquet ({exc})") from exc
    else:
        raw = _read_csv(path, mapping)
    if raw.empty:
        raise IngestError(f"{path}: no rows (a header at most)")
    return raw


def _read_csv(path: Path, mapping: Mapping) -> pd.DataFrame:
    encodings = ENCODINGS if mapping.encoding == "auto" else (mapping.encoding,)
    options = {} if mapping.header else {"header": None, "names": mapping.names}
    for enc in encodings:
        try:
            return pd.read_csv(path, encoding=enc, dtype=str, keep_default_na=False, **options)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError as exc:
            raise IngestError(f"{path}: empty file") from exc
    raise IngestError(f"{path}: text is neither {' nor '.join(encodings)}")


class _Reasons:
    """The first reason each row is refused for ("" while it is not)."""

    def __init__(self, index: pd.Index) -> None:
        self.reason = pd.Series("", index=index)

    def reject(self, mask: pd.Series, why: str) -> None:
        self.reason[mask & (self.reason == "")] = why

    @property
    def bad(self) -> pd.Series:
        return self.reason != ""


def _text(raw: pd.DataFrame, spec: Source, path: Path, reasons: _Reasons, column: str) -> pd.Series:
    """A column's source text: stripped, its group extracted, its direction sign dropped."""
    if spec.filename:
        value = filename_value(spec.filename, path)
        if value is None:
            raise IngestError(f"{path}: the file name does not match {spec.filename!r} ({column})")
        return pd.Series(value, index=raw.index)
    text = raw[spec.source].astype(str).str.strip()
    if spec.extract:
        found = text.str.extract(spec.extract, expand=False)
        reasons.reject(found.isna(), f"{column}: {spec.source!r} does not match {spec.extract!r}")
        text = found.fillna("")
    if spec.abs:
        text = text.str.lstrip("+-")
    return text


def _numbers(text: pd.Series, spec: Source, market: pd.Series | None) -> pd.Series:
    number = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
    if isinstance(spec.scale, dict):
        if market is None:
            raise IngestError(f"a unit by market ({spec.source!r}) needs the market column")
        return number * market.map(spec.scale)
    return number * spec.scale


def _timestamps(raw: pd.DataFrame, mapping: Mapping, path: Path, reasons: _Reasons) -> pd.Series:
    spec = mapping.timestamp
    text = raw[spec.columns].astype(str).agg(" ".join, axis=1)
    fmt = spec.format
    if spec.date is not None:
        date = (
            raw[spec.date.column].astype(str).str.strip()
            if spec.date.column
            else pd.Series(filename_value(spec.date.filename, path), index=raw.index)
        )
        if date.isna().all():
            raise IngestError(f"{path}: the file name holds no date ({spec.date.filename!r})")
        text, fmt = date + " " + text, f"{spec.date.format} {fmt}"
    if fmt == "ISO8601":
        ts = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce").dt.tz_convert(spec.timezone)
    else:
        ts = pd.to_datetime(text, format=fmt, errors="coerce")
        ts = ts.dt.tz_localize(spec.timezone, nonexistent="NaT", ambiguous="NaT")
    reasons.reject(ts.isna(), f"timestamp: not {fmt!r}")
    return ts


def _columns(
    raw: pd.DataFrame, mapping: Mapping, path: Path, reasons: _Reasons, integers: tuple[str, ...]
) -> pd.DataFrame:
    """Every mapped column in its vicap type, translated and scaled; constants after them."""
    out = pd.DataFrame(index=raw.index)
    translations = mapping.translations()
    sources = mapping.sources()
    for column in sorted(sources, key=lambda c: c not in FIRST):
        spec = sources[column]
        text = _text(raw, spec, path, reasons, column)
        if spec.sign_side:
            out[column] = np.select(
                [text.str.startswith("+"), text.str.startswith("-")], [1, -1], SIDE_UNKNOWN
            )
            continue
        values: pd.Series = text
        if column in translations:
            table = translations[column]
            reasons.reject(
                ~text.isin(table.keys()), f"{column}: unknown value in {spec.source or 'file name'!r}"
            )
            values = text.map(table)
        if column in integers:
            number = _numbers(values.astype(str), spec, out.get("market"))
            reasons.reject(
                number.isna() | (number != np.floor(number)), f"{column}: not an integer in {spec.source!r}"
            )
            out[column] = number
        else:
            out[column] = values
    for column, value in mapping.constants.items():
        out[column] = SIDES.get(value, value) if column == "side" else value  # a side may be named
    return out


def convert(
    raw: pd.DataFrame, mapping: Mapping, path: Path, known_codes: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows in the tick schema's types, quarantined raw rows with a ``reason``); with
    ``known_codes``, a stock outside them is quarantined too."""
    _check_columns(raw, mapping, path)
    reasons = _Reasons(raw.index)
    for column, dropped in mapping.exclude.items():
        flag = raw[column].astype(str).str.strip()
        for value in dropped:
            reasons.reject(flag == value, f"excluded by the vendor: {column} is {value!r}")
    out = _columns(raw, mapping, path, reasons, tuple(INTEGER_COLUMNS))
    out["timestamp"] = _timestamps(raw, mapping, path, reasons)
    if "stock_code" in out:
        code = out["stock_code"].astype(str).str.zfill(6)
        reasons.reject(~code.str.fullmatch(r"\d{6}"), "stock_code: not a 6-digit code")
        if known_codes is not None:
            reasons.reject(~code.isin(known_codes), "stock_code: not in the instruments file")
        out["stock_code"] = code
    for column in ("price", "volume"):
        if column in out:
            reasons.reject(out[column] < 0, f"{column}: negative")
    if "vi_type" in out:
        reasons.reject(~out["vi_type"].isin(VI_TYPES), "vi_type: unknown")
    out["base_price"] = _base_price(raw, mapping, out)
    for column, source in mapping.instrument_columns().items():
        out[column] = raw[source]
    return out[~reasons.bad], _refused(raw, reasons, path)


def _base_price(raw: pd.DataFrame, mapping: Mapping, out: pd.DataFrame) -> pd.Series:
    """기준가 where the layout tells it (NaN elsewhere)."""
    spec = mapping.base_price
    if spec is None:
        return pd.Series(np.nan, index=raw.index)
    if isinstance(spec, str):
        return pd.to_numeric(raw[spec].astype(str).str.replace(",", "", regex=False), errors="coerce")
    change = pd.to_numeric(raw[spec.change].astype(str).str.replace(",", "", regex=False), errors="coerce")
    if spec.sign:
        down = raw[spec.sign].astype(str).str.strip().isin(spec.down)
        change = change.abs().where(~down, -change.abs())
    trades = out.get("event_type", pd.Series("trade", index=raw.index)) == "trade"
    return (out["price"] - change).where(trades & (out["price"] > 0))


def _check_columns(raw: pd.DataFrame, mapping: Mapping, path: Path) -> None:
    missing = [c for c in mapping.source_columns() if c not in raw.columns]
    if missing:
        raise IngestError(
            f"{path.name}: column(s) {missing} named by mapping {mapping.name!r} are not in the file"
        )


def _refused(raw: pd.DataFrame, reasons: _Reasons, path: Path) -> pd.DataFrame:
    bad = reasons.bad
    quarantined = raw[bad].copy()
    quarantined["reason"] = reasons.reason[bad]
    quarantined["source"] = path.name
    return quarantined


def convert_vi_events(
    raw: pd.DataFrame, mapping: Mapping, path: Path, known_codes: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A VI event file's rows (a trigger or a release each) in order; refused rows with reasons."""
    _check_columns(raw, mapping, path)
    reasons = _Reasons(raw.index)
    out = _columns(raw, mapping, path, reasons, VI_INTEGER_COLUMNS)
    out["timestamp"] = _timestamps(raw, mapping, path, reasons)
    out["stock_code"] = out["stock_code"].astype(str).str.zfill(6)
    reasons.reject(~out["stock_code"].str.fullmatch(r"\d{6}"), "stock_code: not a 6-digit code")
    if known_codes is not None:
        reasons.reject(~out["stock_code"].isin(known_codes), "stock_code: not in the instruments file")
    reasons.reject(~out["event"].isin(("trigger", "release")), "event: neither trigger nor release")
    trigger = out["event"] == "trigger"
    reasons.reject(trigger & ~out["vi_type"].isin(("static", "dynamic", "both")), "vi_type: unknown")
    out["ref_price"] = out["dynamic_ref"].where(out["vi_type"] == "dynamic", out["static_ref"])
    direction = np.sign(out["trigger_price"] - out["ref_price"])
    reasons.reject(trigger & (direction == 0), "trigger_price equals its reference: no direction")
    out["direction"] = direction
    return out[~reasons.bad], _refused(raw, reasons, path)


def vi_log(events: pd.DataFrame) -> tuple[list[dict], int]:
    """VI log rows from trigger and release events (a release closes its stock's open VI), and the
    count of releases with no VI open (reported, not invented into a VI)."""
    rows, open_vi, orphans = [], {}, 0
    for e in events.sort_values("timestamp", kind="stable").itertuples():
        if e.event == "trigger":
            open_vi[e.stock_code] = len(rows)
            rows.append(
                {
                    "stock_code": e.stock_code,
                    "trigger_ts": e.timestamp,
                    "release_ts": None,
                    "vi_type": e.vi_type,
                    "direction": int(e.direction),
                    "ref_price": int(e.ref_price),
                    "trigger_price": int(e.trigger_price),
                    "auction_price": None,
                }
            )
        elif e.stock_code in open_vi:
            rows[open_vi.pop(e.stock_code)]["release_ts"] = e.timestamp
        else:
            orphans += 1
    return rows, orphans


def _complete(df: pd.DataFrame, merge_by_time: bool, report: IngestReport) -> pd.DataFrame:
    """Fill the columns a source lacks: defaults, an empty book, the session from the clock,
    cum_volume as the running sum of trade volume (or carried to rows of files without it); a
    trade right after a call's indicative rows is its uncross (side 0); investor nets as
    published. Rows of a file kind that lacks a column (a book file has no side) get its default."""
    trade = df["event_type"] == "trade" if "event_type" in df else pd.Series(True, index=df.index)
    for name, value in DEFAULTS.items():
        if name == "side" and name in df:
            df[name] = df[name].fillna(pd.Series(SIDE_UNKNOWN, index=df.index).where(trade, 0))
        df[name] = df[name].fillna(value) if name in df else value
    for f in TICK_SCHEMA:
        if f.name.startswith(("bid_", "ask_")) or f.name in ("price", "volume"):
            df[f.name] = df[f.name].fillna(0) if f.name in df else 0
    # file order within a stock is kept: a row out of time order is for validation to flag
    # (timestamps_non_decreasing), not for the importer to hide; files of several kinds (trades,
    # books) are merged by time, a file's own order kept among equal times
    df = df.sort_values(["stock_code", "timestamp"] if merge_by_time else "stock_code", kind="stable")
    stock_day = [df["stock_code"], df["timestamp"].dt.date]
    if "cum_volume" not in df:
        traded = df["volume"].where(df["event_type"] == "trade", 0)
        df["cum_volume"] = traded.groupby(stock_day).cumsum()
    else:
        df["cum_volume"] = df["cum_volume"].groupby(stock_day).ffill().fillna(0)
    previous = df.groupby(stock_day)["event_type"].shift(1)
    df.loc[(df["event_type"] == "trade") & (previous == "indicative"), "side"] = 0
    if "session" not in df:
        df["session"] = krx.session_labels_by_day(krx.series_us(df["timestamp"]).to_numpy())
    _hold_investor_nets(df, report)
    return df


def _hold_investor_nets(df: pd.DataFrame, report: IngestReport) -> None:
    columns = [c for c in INVESTOR_COLUMNS if (df[c] != 0).any()]  # a layout without flows: zeros
    if not columns:
        return
    us = krx.series_us(df["timestamp"]).to_numpy()
    position = pd.Series(np.arange(len(df)), index=df.index)
    for (_, day), g in position.groupby([df["stock_code"], df["timestamp"].dt.date], sort=False):
        rows = g.to_numpy()[np.argsort(us[g.to_numpy()], kind="stable")]  # in time order
        for column in columns:
            values = df[column].to_numpy()
            held, early = as_published(us[rows], values[rows], publication_times_us(day))
            df.iloc[rows, df.columns.get_loc(column)] = held
            report.investor_changes_held[column] += early


def ingest(
    sources: list[Path], mappings: Mapping | list[Mapping], out: Path, instruments: Path | None = None
) -> IngestReport:
    """Read ``sources`` (each by the first mapping whose ``files`` pattern matches it), write
    ``out/ticks/date=.../<code>.parquet``, ``out/instruments.parquet``, ``out/vi_log.parquet``
    (from a VI event file) and ``out/quarantine/ingest/``; returns the counts."""
    mappings = [mappings] if isinstance(mappings, Mapping) else mappings
    report = IngestReport()
    given = _given_instruments(instruments)
    known = set(given["stock_code"]) if given is not None else None
    frames, events, used = [], [], set()
    for path in sources:
        mapping = next((m for m in mappings if m.reads(path)), None)
        if mapping is None:
            patterns = ", ".join(f"{m.name}: {m.files}" for m in mappings)
            raise IngestError(f"{path}: no mapping of the layout reads this file ({patterns})")
        raw = read_source(path, mapping)
        report.files += 1
        report.rows_in += len(raw)
        if mapping.kind == "vi_events":
            good, bad = convert_vi_events(raw, mapping, path, known)
            events.append(good)
            report.vi_events += len(raw)
        else:
            good, bad = convert(raw, mapping, path, known)
            frames.append(good)
            used.add(mapping.name)
        if len(bad):
            target = out / "quarantine" / "ingest" / f"{path.stem}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(bad.astype(str), preserve_index=False), target)
            report.reasons.update(bad["reason"])
        report.rows_quarantined += len(bad)
        report.rows_accepted += len(good)
    if report.rows_in != report.rows_accepted + report.rows_quarantined:
        raise AssertionError("ingest lost rows: counts do not add up")
    ticks = [f for f in frames if len(f)]
    if not ticks:
        names = ", ".join(p.name for p in sources)
        raise IngestError(f"{names}: no tick row could be read ({report.rows_quarantined} quarantined)")
    df = _name_stocks(pd.concat(ticks, ignore_index=True), given, mappings)
    df = _complete(df, len(used) > 1, report)
    inst = _instruments(df, instruments, given)
    report.stock_days, _ = write_ticks(df, out)
    pq.write_table(inst, out / "instruments.parquet")
    if events:
        rows, orphans = vi_log(pd.concat(events, ignore_index=True))
        report.vi_log_rows = len(rows)
        report.reasons.update({"VI release with no VI open (not in the log)": orphans} if orphans else {})
        _write_vi_log(rows, out / "vi_log.parquet")
    _write_summary(report, mappings, "vi_status" in set().union(*(m.columns for m in mappings)), out)
    return report


def _given_instruments(path: Path | None) -> pd.DataFrame | None:
    """The stocks ``--instruments`` names: instruments.parquet, or a stock list CSV."""
    if path is None:
        return None
    if path.suffix.lower() == ".csv":
        return read_stock_list(path)
    return read_instruments(path).to_pandas()


def _name_stocks(df: pd.DataFrame, given: pd.DataFrame | None, mappings: list[Mapping]) -> pd.DataFrame:
    """stock_name and market from the instruments where the layout has none."""
    for column in ("stock_name", "market"):
        if column in df and df[column].notna().all():
            continue
        if given is None:
            names = ", ".join(m.name for m in mappings)
            raise IngestError(
                f"layout {names} has no {column}: pass --instruments (a stock list CSV: stock_code, "
                f"stock_name, market, kospi200; or instruments.parquet)"
            )
        lookup = given.drop_duplicates("stock_code").set_index("stock_code")[column]
        df[column] = df["stock_code"].map(lookup)
    return df


def _write_vi_log(rows: list[dict], path: Path) -> None:
    frame = pd.DataFrame(rows)
    for name in ("trigger_ts", "release_ts"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_convert(krx.SEOUL).dt.as_unit("us")
    pq.write_table(
        pa.Table.from_pandas(frame[VI_LOG_SCHEMA.names], preserve_index=False).cast(VI_LOG_SCHEMA), path
    )


def _write_summary(report: IngestReport, mappings: list[Mapping], flags: bool, out: Path) -> None:
    (out / SUMMARY_FILE).write_text(
        json.dumps(
            {
                "mapping": ", ".join(m.name for m in mappings),
                "files": report.files,
                "rows_in": report.rows_in,
                "rows_accepted": report.rows_accepted,
                "rows_quarantined": report.rows_quarantined,
                "reasons": report.reasons,
                "vi_event_rows": report.vi_events,
                "vi_log_rows": report.vi_log_rows,
                "investor_changes_held_to_publication": dict(report.investor_changes_held),
                "has_vi_flags": flags,
            },
            indent=2,
            ensure_ascii=False,
        )
    )


def to_vendor_layout(ticks: pd.DataFrame, mapping: Mapping, instrument: dict) -> pd.DataFrame:
    """Ticks of one stock-day (``instrument``: its instruments.parquet row) in ``mapping``'s vendor
    layout, the inverse of :func:`convert` for plain column mappings: for round-trip checks and for
    handing data to tools that read vendor exports. A value several source texts translate to is
    written as the first."""
    inverse: dict[str, dict] = {}
    for column, table in mapping.translations().items():
        for text, value in table.items():
            inverse.setdefault(column, {}).setdefault(value, text)
    out = pd.DataFrame(index=ticks.index)
    local = ticks["timestamp"].dt.tz_convert(mapping.timestamp.timezone)
    # the timestamp columns are joined with a space before parsing: split the format the same way
    for column, fmt in zip(mapping.timestamp.columns, mapping.timestamp.format.split(" "), strict=True):
        out[column] = local.dt.strftime(fmt)
    for column, spec in mapping.sources().items():
        out[spec.source] = ticks[column].map(inverse[column]) if column in inverse else ticks[column]
    for column, source in mapping.instrument_columns().items():
        out[source] = "Y" if instrument[column] else "N"
    if isinstance(mapping.base_price, str):
        out[mapping.base_price] = instrument["base_price"]
    return out


def _instruments(df: pd.DataFrame, path: Path | None, given: pd.DataFrame | None) -> pa.Table:
    """instruments.parquet: as ``--instruments`` gave it, or derived per stock-day (membership
    from a given stock list, else from the layout's columns)."""
    if path is not None and path.suffix.lower() != ".csv":
        return pa.Table.from_pandas(given, schema=INSTRUMENT_SCHEMA, preserve_index=False)
    members = given.set_index("stock_code") if given is not None else None
    rows = []
    day = df["timestamp"].dt.date
    for code, g in df.groupby("stock_code"):
        prev_close = None
        for d, gd in g.groupby(day[g.index]):
            first = gd.iloc[0]
            bases = gd["base_price"].dropna()
            if len(bases):
                base = int(bases.iloc[0])
            elif prev_close is not None:
                base = prev_close
            else:
                raise IngestError(
                    f"stock {code} on {d}: no 기준가 (map `base_price:`) and no previous day "
                    f"to take it from; pass --instruments instruments.parquet"
                )
            member = members.loc[code] if members is not None and code in members.index else first
            rows.append(
                {
                    "date": d,
                    "stock_code": code,
                    "stock_name": str(first["stock_name"]),
                    "market": str(first["market"]),
                    **{m: is_yes(member.get(m, "N")) for m in MEMBERSHIP},
                    "base_price": base,
                }
            )
            trades = gd[gd["event_type"] == "trade"]
            prev_close = int(trades["price"].iloc[-1]) if len(trades) else base
    return pa.Table.from_pylist(rows, schema=INSTRUMENT_SCHEMA)
