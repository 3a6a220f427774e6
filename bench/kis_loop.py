"""The KIS recording ingest as it was before issue 11 (commit 4186abc), kept as the baseline of
``bench/kis_ingest.py``: a Python loop over the lines, one ``json.loads``, one frame parse and one
dict per record, and one function merging each stock's records. Only the benchmark imports it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market import krx
from market.kis import formats as kis
from market.kis.feed import AUCTION, NORMAL, RELEASED
from market.kis.ingest import (
    KisReport,
    _read_vi_status,
    _write_summary,
    _write_vi_log,
    find_sources,
    load_stocks,
    reason_key,
)
from market.kis.recording import _INT_FIELDS, _TIME_FIELD, LEVELS, STOCKS_FILE, Refused
from market.krx.dataset import SUMMARY_FILE, IngestError, write_ticks
from market.krx.schema import (
    INSTRUMENT_SCHEMA,
    RECV_TS_FIELD,
    VI_STATUS_AUCTION,
    VI_STATUS_RELEASED,
)


@dataclass(slots=True)
class _Record:
    seq: int
    recv_us: int
    day: dt.date
    clock_us: int | None  # exchange time, if the tr_id carries one
    tr_id: str
    fields: dict[str, str]
    ints: dict[str, int]


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def _read_recording(
    path: Path, stocks: dict[str, dict], report: KisReport, quarantine: Refused
) -> list[_Record]:
    records: list[_Record] = []
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            report.lines += 1
            try:
                obj = json.loads(line)
                recv_text, frame = obj["recv_ts"], obj["frame"]
                recv = dt.datetime.fromisoformat(recv_text)
                if recv.tzinfo is None:
                    raise ValueError("recv_ts has no UTC offset")
                if not isinstance(frame, str):
                    raise ValueError("frame is not a string")
                parsed = _parse_frame(frame)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, kis.FrameError | ValueError) else ""
                if isinstance(exc, json.JSONDecodeError) or not reason:
                    reason = 'not a JSON object {"recv_ts", "frame"}'
                quarantine.add(path.name, line_no, "", -1, reason, line)
                report.lines_quarantined += 1
                report.reasons[reason_key(reason)] += 1
                continue
            if isinstance(parsed, kis.Control):
                report.control[parsed.kind] += 1
                continue
            report.data_frames += 1
            recv_us = krx.epoch_us(recv)
            recv_day = recv.astimezone(krx.SEOUL).date()
            for k, fields in enumerate(parsed.records):
                report.records += 1
                try:
                    rec = _record(len(records), recv_us, recv_day, parsed.tr_id, fields, stocks)
                except ValueError as exc:
                    quarantine.add(path.name, line_no, recv_text, k, str(exc), frame)
                    report.records_quarantined += 1
                    report.reasons[reason_key(str(exc))] += 1
                    continue
                report.records_accepted += 1
                records.append(rec)
    return records


def _record(
    seq: int, recv_us: int, recv_day: dt.date, tr_id: str, fields: dict[str, str], stocks: dict
) -> _Record:
    code = fields["MKSC_SHRN_ISCD"].strip()
    if code not in stocks:
        raise ValueError(f"stock_code {code!r} is not in {STOCKS_FILE}")
    ints = {}
    for name in _INT_FIELDS[tr_id]:
        text = fields[name].strip()
        try:
            ints[name] = int(text)
        except ValueError:
            raise ValueError(f"{tr_id} {name}: {text!r} is not an integer") from None
    day = recv_day
    if tr_id == kis.TRADES:
        try:
            day = dt.datetime.strptime(fields["BSOP_DATE"], "%Y%m%d").date()
        except ValueError:
            raise ValueError(f"{tr_id} BSOP_DATE: {fields['BSOP_DATE']!r} is not YYYYMMDD") from None
        if fields["CCLD_DVSN"] not in kis.SIDE_BY_CCLD_DVSN:
            raise ValueError(f"{tr_id} CCLD_DVSN: unknown code {fields['CCLD_DVSN']!r}")
        if ints["STCK_PRPR"] <= 0 or ints["CNTG_VOL"] <= 0:
            raise ValueError(f"{tr_id} STCK_PRPR/CNTG_VOL: price and volume must be positive")
    if tr_id == kis.MARKET_OP and fields["VI_CLS_CODE"] not in ("Y", "N"):
        raise ValueError(f"{tr_id} VI_CLS_CODE: {fields['VI_CLS_CODE']!r} is neither Y nor N")
    clock = None
    if tr_id in _TIME_FIELD:
        try:
            clock = krx.parse_hhmmss(day, fields[_TIME_FIELD[tr_id]])
        except ValueError as exc:
            raise ValueError(f"{tr_id} {_TIME_FIELD[tr_id]}: {exc}") from None
    return _Record(seq, recv_us, day, clock, tr_id, fields, ints)


def _merge_stock(code: str, records: list[_Record], stock: dict, vi_rows: list[dict], report: KisReport):
    """Rows of one stock (all its days) in arrival order, and its instrument rows."""
    rows: list[dict] = []
    instruments: dict[dt.date, dict] = {}
    empty_book = dict.fromkeys(
        (f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "volume") for i in LEVELS), 0
    )
    by_second = {(v["trigger_ts"] // 1_000_000): v for v in vi_rows}
    day = None
    clock = state = cum = program = 0
    vi: dict | None = None
    for rec in records:
        if rec.day != day:
            day, clock, state, cum, program, vi = rec.day, 0, NORMAL, 0, 0, None
        base = _base_price(rec)
        if base and day not in instruments:
            instruments[day] = {"date": day, "stock_code": code, **stock, "base_price": base}
        # H0STMKO0 has no exchange time: the second it was received is the best estimate
        stamp = rec.clock_us if rec.clock_us is not None else rec.recv_us // 1_000_000 * 1_000_000
        if stamp < clock:
            report.clock_held += rec.clock_us is not None
        clock = max(clock, stamp)
        ints, f = rec.ints, rec.fields
        if rec.tr_id == kis.PROGRAM:
            program = ints["NTBY_CNQN"]
            continue
        row = {"timestamp": clock, "recv_ts": rec.recv_us, "price": 0, "volume": 0, "side": 0}
        if rec.tr_id == kis.TRADES:
            side = kis.SIDE_BY_CCLD_DVSN[f["CCLD_DVSN"]]
            cum = ints["ACML_VOL"]
            status = NORMAL
            if state == AUCTION:
                status, state = VI_STATUS_RELEASED, (RELEASED if side == 0 else NORMAL)
            row.update(event_type="trade", price=ints["STCK_PRPR"], volume=ints["CNTG_VOL"], side=side)
            row.update(empty_book)
        elif rec.tr_id == kis.BOOK:
            book = {
                **{f"ask_price_{i}": ints[f"ASKP{i}"] for i in LEVELS},
                **{f"bid_price_{i}": ints[f"BIDP{i}"] for i in LEVELS},
                **{f"ask_volume_{i}": ints[f"ASKP_RSQN{i}"] for i in LEVELS},
                **{f"bid_volume_{i}": ints[f"BIDP_RSQN{i}"] for i in LEVELS},
            }
            status = VI_STATUS_AUCTION if state == AUCTION else NORMAL
            indicative = ints["ANTC_CNPR"] > 0
            row.update(book)
            row.update(
                event_type="indicative" if indicative else "book",
                price=ints["ANTC_CNPR"] if indicative else 0,
                volume=ints["ANTC_CNQN"] if indicative else 0,
            )
        else:  # H0STMKO0: a VI starts ('Y') or ends ('N')
            on = f["VI_CLS_CODE"] == "Y"
            status = NORMAL
            if on and state != AUCTION:
                vi = by_second.get(clock // 1_000_000) or by_second.get(clock // 1_000_000 - 1)
                state, status = AUCTION, VI_STATUS_AUCTION
                row["price"] = vi["trigger_price"] if vi else 0
            elif on:
                status = VI_STATUS_AUCTION
            elif state in (AUCTION, RELEASED):
                status, state = VI_STATUS_RELEASED, NORMAL
            row.update(event_type="status")
            row.update(empty_book)
        in_vi = status != NORMAL
        row.update(
            cum_volume=cum,
            program_net_buy=program,
            vi_status=status,
            vi_type=vi["vi_type"] if (in_vi and vi) else "none",
            vi_reason=f"{vi['vi_type']}_{'up' if vi['direction'] > 0 else 'down'}" if (in_vi and vi) else "",
            day=day,
        )
        if state == NORMAL and status == NORMAL:
            vi = None
        rows.append(row)
    return rows, instruments


def _base_price(rec: _Record) -> int | None:
    """기준가 from the feed: the price minus its change from the previous close."""
    if rec.tr_id == kis.TRADES:
        return rec.ints["STCK_PRPR"] - rec.ints["PRDY_VRSS"]
    if rec.tr_id == kis.BOOK and rec.ints["ANTC_CNPR"] > 0:
        return rec.ints["ANTC_CNPR"] - rec.ints["ANTC_CNTG_VRSS"]
    return None


def ingest_kis(src: Path, out: Path, stocks_path: Path | None = None) -> KisReport:
    """Read the recordings and VI-status responses of ``src``; write the tick dataset to ``out``."""
    recordings, vi_files, default_stocks = find_sources(src)
    if not recordings:
        raise IngestError(f"{src}: no KIS recordings (*.jsonl, *.jsonl.gz)")
    stocks = load_stocks(stocks_path or default_stocks)
    report = KisReport()
    quarantine = Refused()
    unique: dict[tuple, dict] = {}
    for path in vi_files:
        _read_vi_status(path, quarantine, report, unique)
    per_stock: dict[str, list[_Record]] = defaultdict(list)
    for path in recordings:
        if path.stat().st_size == 0:
            raise IngestError(f"{path}: empty file")
        report.files += 1
        try:
            for rec in _read_recording(path, stocks, report, quarantine):
                per_stock[rec.fields["MKSC_SHRN_ISCD"]].append(rec)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise IngestError(f"{path}: unreadable recording ({exc})") from exc
    vi_by_stock: dict[str, list[dict]] = defaultdict(list)
    for r in unique.values():
        vi_by_stock[r["stock_code"]].append(r)
    instruments: list[dict] = []
    frames = []
    for code, records in sorted(per_stock.items()):
        records.sort(key=lambda r: (r.recv_us, r.seq))  # arrival order across files
        rows, inst = _merge_stock(code, records, stocks[code], vi_by_stock[code], report)
        missing = sorted({r["day"] for r in rows} - set(inst))
        if missing:
            raise IngestError(
                f"stock {code} on {missing[0]}: no 기준가 in the recording (no trade and no indicative "
                f"price); record from before the open"
            )
        instruments += inst.values()
        if rows:
            df = pd.DataFrame(rows)
            df["stock_code"], df["stock_name"], df["market"] = (
                code,
                stocks[code]["stock_name"],
                stocks[code]["market"],
            )
            frames.append(df)
    if not report.balanced:
        raise AssertionError("kis ingest lost lines or records: counts do not add up")
    out.mkdir(parents=True, exist_ok=True)
    if quarantine.rows:
        target = out / "quarantine" / "ingest" / "kis.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(quarantine.rows), target)
    if frames:
        df = pd.concat(frames, ignore_index=True)
        df = _finish(df)
        report.stock_days, report.rows_written = write_ticks(df, out, extra=(RECV_TS_FIELD,))
    pq.write_table(
        pa.Table.from_pylist(
            sorted(instruments, key=lambda r: (r["date"], r["stock_code"])), INSTRUMENT_SCHEMA
        ),
        out / "instruments.parquet",
    )
    if unique:
        _write_vi_log(
            sorted(unique.values(), key=lambda r: (r["trigger_ts"], r["stock_code"])), out / "vi_log.parquet"
        )
    _write_summary(report, out / SUMMARY_FILE)
    return report


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    """The session from the clock, the columns the KIS feed lacks, and timestamp types."""
    df["session"] = krx.session_labels_by_day(df["timestamp"].to_numpy())
    for name in ("institution_net", "foreign_net", "individual_net"):
        df[name] = 0  # KIS publishes investor flows by REST only: not in a recording
    df["news_flag"] = df["disclosure_flag"] = False
    for name in ("timestamp", "recv_ts"):
        df[name] = krx.seoul_timestamps(df[name])
    return df.drop(columns="day")


def _parse_frame(text: str) -> kis.Records | kis.Control:
    """One received text frame; raises :class:`kis.FrameError` naming what is wrong."""
    if text.startswith("{"):
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise kis.FrameError(f"control message is not JSON ({exc.msg})") from exc
        header = msg.get("header", {}) if isinstance(msg, dict) else {}
        body = msg.get("body", {}) if isinstance(msg, dict) else {}
        tr_id = header.get("tr_id", "") if isinstance(header, dict) else ""
        kind = tr_id if tr_id == "PINGPONG" else (body.get("msg1") if isinstance(body, dict) else None)
        return kis.Control(str(kind or tr_id or "unknown control message").strip(), text)
    parts = text.split("|", 3)
    if len(parts) != 4:
        raise kis.FrameError("not a KIS frame: expected 4 '|'-separated parts")
    encrypted, tr_id, count_text, payload = parts
    if encrypted == "1":
        raise kis.FrameError(f"encrypted frame ({tr_id}): AES-encrypted order notices are not market data")
    if encrypted != "0":
        raise kis.FrameError(f"encrypted flag {encrypted!r} is neither 0 nor 1")
    names = kis.FIELDS.get(tr_id)
    if names is None:
        raise kis.FrameError(f"unknown tr_id {tr_id!r}")
    if not (len(count_text) == 3 and count_text.isdigit()) or int(count_text) == 0:
        raise kis.FrameError(f"record count {count_text!r} is not a 3-digit number from 001")
    count = int(count_text)
    values = payload.split("^")
    if len(values) != count * len(names):
        raise kis.FrameError(
            f"field count {len(values)} does not match {tr_id}: "
            f"{len(names)} fields per record, {count} records"
        )
    n = len(names)
    return kis.Records(
        tr_id, [dict(zip(names, values[i * n : (i + 1) * n], strict=True)) for i in range(count)], n
    )
