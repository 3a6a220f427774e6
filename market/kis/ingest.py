"""KIS real-time recordings in, the vicap tick dataset out.

A source directory holds the recordings (``*.jsonl``, ``*.jsonl.gz``: one ``{"recv_ts", "frame"}``
object a line, see :mod:`market.kis.recording`), the stock list ``stocks.csv`` (stock_code,
stock_name, market, kospi200) and optionally the VI-status REST responses (``vi_status*.json``,
FHPST01390000).

The work is in parts: the lines and frames are read and checked a column at a time, per tr_id
(:mod:`market.kis.recording`); each stock's records then go through its :class:`StockFeed` in
arrival order, the order a live executor sees them, for the exchange clock, the VI state and the
auction prints (:mod:`market.kis.feed`); the rows of the tick schema are assembled a column at a
time: H0STCNT0 records become trades, H0STASP0 records book or indicative rows, H0STMKO0 records
status rows, and H0STPGM0 records update the carried ``program_net_buy``. ``recv_ts`` is kept.
The live executor runs these same steps on each batch of frames as they arrive
(:mod:`market.kis.live`): the KIS mapping has this one home.

A recording may start mid-session: its first trade carries the day's ACML_VOL so far, and is good
data. Records whose width drifted from the documented layout are read by their known prefix and
counted per tr_id and width in the summary (``drift``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from market import krx
from market.kis import formats as kis
from market.kis.feed import StockFeed
from market.kis.recording import (
    BOOK,
    KINDS,
    LEVELS,
    MARKET_OP,
    PROGRAM,
    STOCKS_FILE,
    TRADE,
    Lines,
    Refused,
    Typed,
    read_lines,
    typed_records,
)
from market.krx.dataset import SUMMARY_FILE, IngestError, read_stock_list, write_ticks
from market.krx.schema import EVENT_TYPES, INSTRUMENT_SCHEMA, RECV_TS_FIELD, VI_LOG_SCHEMA

RECORDING_PATTERNS = ("*.jsonl", "*.jsonl.gz")
VI_STATUS_PATTERN = "vi_status*.json"
BOOK_COLUMNS = [f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "volume") for i in LEVELS]
_BOOK_SOURCE = {
    **{f"ask_price_{i}": f"ASKP{i}" for i in LEVELS},
    **{f"bid_price_{i}": f"BIDP{i}" for i in LEVELS},
    **{f"ask_volume_{i}": f"ASKP_RSQN{i}" for i in LEVELS},
    **{f"bid_volume_{i}": f"BIDP_RSQN{i}" for i in LEVELS},
}


@dataclass
class KisReport:
    files: int = 0
    lines: int = 0
    data_frames: int = 0
    control: Counter = field(default_factory=Counter)
    lines_quarantined: int = 0
    records: int = 0
    records_accepted: int = 0
    records_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    drift: Counter = field(default_factory=Counter)  # (tr_id, fields per record) -> records
    unknown_codes: Counter = field(default_factory=Counter)  # (tr_id, field, value) -> records
    halted_records: int = 0  # TRHT_YN 'Y' (거래정지)
    rows_written: int = 0
    stock_days: int = 0
    clock_held: int = 0  # records stamped with the stock's later clock (exchange time went back)
    vi_records: int = 0
    vi_accepted: int = 0
    vi_quarantined: int = 0

    @property
    def balanced(self) -> bool:
        return (
            self.lines == self.data_frames + sum(self.control.values()) + self.lines_quarantined
            and self.records == self.records_accepted + self.records_quarantined
            and self.vi_records == self.vi_accepted + self.vi_quarantined
        )

    def refuse(
        self, refused: Refused, file: str, line: int, recv_ts: str, record: int, reason: str, raw: str
    ):
        refused.add(file, line, recv_ts, record, reason, raw)
        self.reasons[reason_key(reason)] += 1


def reason_key(reason: str) -> str:
    """A reason without its values, to count alike reasons together."""
    return re.sub(r"(?<![A-Z0-9])\d+", "N", re.sub(r"'[^']*'|\([^)]*\)", "…", reason))


def load_stocks(path: Path) -> dict[str, dict]:
    """The stock list (:func:`market.krx.dataset.read_stock_list`) a recording was made for."""
    if not path.exists():
        raise IngestError(
            f"{path}: kis-log needs the stock list (stock_code, stock_name, market, kospi200) "
            f"beside the recordings or as --instruments"
        )
    return read_stock_list(path).set_index("stock_code").to_dict("index")


def _read_recording(
    path: Path, file_no: int, stocks: dict, report: KisReport, refused: Refused
) -> list[tuple]:
    """The accepted records of one recording, per tr_id: (tr_id, Typed), a block at a time."""
    report.files += 1
    typed = []
    try:
        for lines in read_lines(path):
            typed += _read_block(path.name, lines, file_no, stocks, report, refused)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: unreadable recording ({exc})") from exc
    return typed


def _read_block(
    file: str, lines: Lines, file_no: int, stocks: dict, report: KisReport, refused: Refused
) -> list[tuple]:
    """The accepted records of a block of lines (of recording ``file``, or of frames as the live
    feed received them: :mod:`market.kis.live`), per tr_id; every line and record counted."""
    report.lines += len(lines.line) + len(lines.refused)
    report.lines_quarantined += len(lines.refused)
    for line, reason, raw in lines.refused:
        report.refuse(refused, file, line, "", -1, reason, raw)
    batch = kis.parse_frames(lines.frame)
    report.control.update(c.kind for c in batch.control.values())
    report.lines_quarantined += len(batch.errors)
    for i, reason in batch.errors.items():
        raw = json.dumps(
            {"recv_ts": lines.recv_ts[i].as_py(), "frame": lines.frame[i].as_py()}, ensure_ascii=False
        )
        report.refuse(refused, file, int(lines.line[i]), "", -1, reason, raw)
    report.data_frames += len(lines.line) - len(batch.control) - len(batch.errors)
    report.drift.update({f"{tr_id} {width} fields": n for (tr_id, width), n in batch.drift.items()})
    typed = []
    for tr_id, table in batch.tables.items():
        records, checks = typed_records(tr_id, table, lines, file_no, sorted(stocks), report.unknown_codes)
        report.records += table.num_rows
        report.records_accepted += len(records.spine)
        report.records_quarantined += table.num_rows - len(records.spine)
        report.halted_records += int(records.spine["halted"].sum())
        frames = table["frame"].to_numpy()
        for i in np.flatnonzero(~checks.ok):
            f = frames[i]
            report.refuse(
                refused,
                file,
                int(lines.line[f]),
                lines.recv_ts[f].as_py(),
                int(table["record"][i].as_py()),
                checks.reason[i],
                lines.frame[f].as_py(),
            )
        typed.append((tr_id, records))
    return typed


def _run_feeds(
    spine: pd.DataFrame,
    fields: dict,
    stock_codes: list[str],
    vi_rows: list[dict],
    feeds: dict[int, StockFeed] | None = None,
) -> tuple[pd.DataFrame, int]:
    """Each stock's records through its :class:`StockFeed`, in arrival order: what the feed made
    of each record, and how many records came with an exchange time before the stock's clock.
    ``feeds`` (by index into ``stock_codes``) keeps each stock's feed from call to call (the live
    feed's batches); without it every call starts afresh (a recording read whole)."""
    by_stock: dict[str, dict[int, int]] = defaultdict(dict)
    for i, v in enumerate(vi_rows):
        by_stock[v["stock_code"]][v["trigger_ts"] // krx.US_PER_SECOND] = i
    stock = spine["stock"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, stock[1:] != stock[:-1], True])
    kinds, days, stamps = spine["kind"].tolist(), spine["day"].tolist(), spine["stamp_us"].tolist()
    sides, vi_on, refs = spine["side"].tolist(), spine["vi_on"].tolist(), spine["static_ref"].tolist()
    prices = np.zeros(len(spine), dtype=np.int64)
    trade = spine["kind"].to_numpy() == TRADE
    prices[trade] = fields[TRADE]["STCK_PRPR"][spine["src"].to_numpy()[trade]] if trade.any() else 0
    prices = prices.tolist()
    hours = np.array(kis.HOUR_CLS_CODES, dtype=object)[spine["hour"].to_numpy()].tolist()
    results = []
    clock_held = 0
    feeds = {} if feeds is None else feeds
    for lo, hi in pairwise(bounds.tolist()):
        feed = feeds.get(stock[lo])
        if feed is None:
            feed = feeds[stock[lo]] = StockFeed(by_stock[stock_codes[stock[lo]]])
        held_before = feed.clock_held
        for i in range(lo, hi):
            k = kinds[i]
            if k == TRADE:
                results.append(feed.on_trade(days[i], stamps[i], sides[i], hours[i], prices[i], refs[i]))
            elif k == BOOK:
                results.append(feed.on_book(days[i], stamps[i], hours[i]))
            elif k == MARKET_OP:
                results.append(feed.on_market_op(days[i], stamps[i], vi_on[i]))
            else:
                results.append(feed.on_program(days[i], stamps[i]))
        clock_held += feed.clock_held - held_before
    columns = list(zip(*results, strict=True)) if results else [[]] * 5
    names = ("timestamp", "vi_status", "print_side", "vi", "started")
    return pd.DataFrame(dict(zip(names, columns, strict=True))), clock_held


def _run_starts(spine: pd.DataFrame) -> np.ndarray:
    """For each record, the first record of its stock-day run (the feed resets on a new day)."""
    stock, day = spine["stock"].to_numpy(), spine["day"].to_numpy()
    new = np.r_[True, (stock[1:] != stock[:-1]) | (day[1:] != day[:-1])]
    return np.maximum.accumulate(np.where(new, np.arange(len(new)), 0))


def _carried(
    spine: pd.DataFrame,
    starts: np.ndarray,
    kind: int,
    values: np.ndarray | None,
    carry: dict[int, tuple[int, int]] | None = None,
) -> np.ndarray:
    """The latest value of a ``kind`` record so far in each stock-day (0 before the first).
    ``carry`` (live batches) holds each stock's (day, latest value) from the batches before: a
    stock-day that goes on from them starts from it, and it takes this batch's latest values."""
    n = len(spine)
    mine = spine["kind"].to_numpy() == kind
    carried = np.zeros(n, dtype=np.int64)
    if carry is not None:
        _carry_in(spine, starts, carry, carried)
    if values is not None and mine.any():
        full = np.zeros(n, dtype=np.int64)
        full[mine] = values[spine["src"].to_numpy()[mine]]
        last = np.maximum.accumulate(np.where(mine, np.arange(n), -1))
        seen = last >= starts
        carried[seen] = full[last[seen]]
    if carry is not None:
        ends = np.r_[np.flatnonzero(starts[1:] != starts[:-1]), n - 1] if n else []
        stock, day = spine["stock"].to_numpy(), spine["day"].to_numpy()
        carry.update({int(stock[e]): (int(day[e]), int(carried[e])) for e in ends})
    return carried


def _carry_in(spine: pd.DataFrame, starts: np.ndarray, carry: dict, carried: np.ndarray) -> None:
    """The value each stock's first run in the batch carries from the batches before: the
    stock's latest, where the run goes on with its day."""
    stock, day = spine["stock"].to_numpy(), spine["day"].to_numpy()
    firsts = np.flatnonzero(np.r_[True, stock[1:] != stock[:-1]]) if len(stock) else []
    before = np.zeros(len(starts), dtype=np.int64)
    for i in firsts:
        last_day, value = carry.get(int(stock[i]), (-1, 0))
        before[i] = value if last_day == day[i] else 0
    carried[:] = before[starts]


def _rows(
    spine: pd.DataFrame,
    fields: dict[int, dict[str, np.ndarray]],
    stocks: dict,
    vi_rows: list[dict],
    carry: dict[int, dict[int, tuple[int, int]]] | None = None,
) -> pa.Table:
    """The tick rows of every trade, book and status record (program records are carried).
    ``carry`` (live batches): per kind (TRADE: ACML_VOL, PROGRAM: NTBY_CNQN), what
    :func:`_carried` keeps from batch to batch."""
    kind, src = spine["kind"].to_numpy(), spine["src"].to_numpy()
    starts = _run_starts(spine)
    carry_cum, carry_program = (None, None) if carry is None else (carry[TRADE], carry[PROGRAM])
    cum = _carried(spine, starts, TRADE, fields[TRADE].get("ACML_VOL"), carry_cum)
    program = _carried(spine, starts, PROGRAM, fields[PROGRAM].get("NTBY_CNQN"), carry_program)
    keep = kind != PROGRAM
    kind, src, n = kind[keep], src[keep], int(keep.sum())
    trade, book, status = kind == TRADE, kind == BOOK, kind == MARKET_OP
    price, volume = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    price[trade] = fields[TRADE]["STCK_PRPR"][src[trade]] if trade.any() else 0
    volume[trade] = fields[TRADE]["CNTG_VOL"][src[trade]] if trade.any() else 0
    antc = fields[BOOK]["ANTC_CNPR"][src[book]] if book.any() else np.zeros(0, np.int64)
    price[book] = antc  # the expected price of a call auction (예상체결가), 0 outside one
    volume[book] = np.where(antc > 0, fields[BOOK]["ANTC_CNQN"][src[book]], 0) if book.any() else 0
    # text columns as a few words and an index into them: Arrow decodes them in one pass
    event = np.full(n, EVENT_TYPES.index("status"), dtype=np.int8)
    event[trade] = EVENT_TYPES.index("trade")
    event[book] = np.where(antc > 0, EVENT_TYPES.index("indicative"), EVENT_TYPES.index("book"))
    vi = spine["vi"].to_numpy()[keep]
    trigger = np.array([v["trigger_price"] for v in vi_rows] + [0], dtype=np.int64)
    started = status & spine["started"].to_numpy()[keep]
    price[started] = trigger[vi[started]]  # a VI's status row carries its trigger price (NO_VI: 0)
    stock = spine["stock"].to_numpy()[keep]
    codes = sorted(stocks)
    reasons = [f"{v['vi_type']}_{'up' if v['direction'] > 0 else 'down'}" for v in vi_rows]
    columns = {
        "timestamp": spine["timestamp"].to_numpy()[keep],
        "recv_ts": spine["recv_us"].to_numpy()[keep],
        "stock_code": _words(stock, codes),
        "stock_name": _words(stock, [stocks[c]["stock_name"] for c in codes]),
        "market": _words(stock, [stocks[c]["market"] for c in codes]),
        "event_type": _words(event, list(EVENT_TYPES)),
        "price": price,
        "volume": volume,
        "side": np.where(trade, spine["print_side"].to_numpy()[keep], 0).astype(np.int8),
        "cum_volume": cum[keep],
        "program_net_buy": program[keep],
        "vi_status": spine["vi_status"].to_numpy()[keep].astype(np.int8),
        "vi_type": _words(vi, [v["vi_type"] for v in vi_rows] + ["none"]),  # NO_VI (-1): the last
        "vi_reason": _words(vi, [*reasons, ""]),
    }
    for column in BOOK_COLUMNS:
        values = np.zeros(n, dtype=np.int64)
        if book.any():
            values[book] = fields[BOOK][_BOOK_SOURCE[column]][src[book]]
        columns[column] = values
    return _finish(columns)


def _words(index: np.ndarray, words: list[str]) -> pa.Array:
    """``words[index]`` as Arrow text (a negative index counts from the end)."""
    index = np.where(index < 0, index + len(words), index).astype(np.int32)
    return pa.DictionaryArray.from_arrays(index, pa.array(words, pa.string())).dictionary_decode()


def _base_prices(spine: pd.DataFrame, fields: dict[int, dict[str, np.ndarray]]) -> pd.Series:
    """기준가 per (stock, day) from the feed: the first trade's price minus its change from the
    previous close, or a book's expected price minus its change (KIS sends minus the previous
    close there when no auction runs: the base price again)."""
    kind, src = spine["kind"].to_numpy(), spine["src"].to_numpy()
    base = np.zeros(len(spine), dtype=np.int64)
    trade, book = kind == TRADE, kind == BOOK
    if trade.any():
        base[trade] = fields[TRADE]["STCK_PRPR"][src[trade]] - fields[TRADE]["PRDY_VRSS"][src[trade]]
    if book.any():
        base[book] = fields[BOOK]["ANTC_CNPR"][src[book]] - fields[BOOK]["ANTC_CNTG_VRSS"][src[book]]
    known = pd.Series(np.where(base > 0, base, np.nan), index=spine.index)
    return known.groupby([spine["stock"], spine["day"]], sort=False).first()


def _read_vi_status(path: Path, refused: Refused, report: KisReport, seen: dict) -> None:
    """FHPST01390000 output rows (a response object with ``output``, or a list of rows) into
    ``seen``, keyed by (stock, trigger time): polls of the last 30 records overlap."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(f"{path}: not a VI-status JSON response ({exc})") from exc
    rows = doc.get("output", []) if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise IngestError(f"{path}: 'output' is not a list of VI-status rows")
    for i, row in enumerate(rows):
        report.vi_records += 1
        try:
            vi = _vi_row(row)
            if (vi["stock_code"], vi["trigger_ts"]) in seen:
                raise ValueError("duplicate of an earlier poll")
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"VI status: {exc}" if not isinstance(exc, KeyError) else f"VI status: missing {exc}"
            report.refuse(refused, path.name, i + 1, "", -1, reason, json.dumps(row, ensure_ascii=False))
            report.vi_quarantined += 1
            continue
        seen[(vi["stock_code"], vi["trigger_ts"])] = vi
        report.vi_accepted += 1


def _vi_row(row: dict) -> dict:
    day = dt.datetime.strptime(row["bsop_date"], "%Y%m%d").date()
    vi_type = kis.VI_TYPE_BY_KIND.get(str(row["vi_kind_code"]))
    if vi_type is None:
        raise ValueError(
            f"vi_kind_code {row['vi_kind_code']!r} is not a known kind (1 static, 2 dynamic, 3 both)"
        )
    static = vi_type != "dynamic"
    deviation = float(row["vi_dprt"] if static else row["vi_dmc_dprt"])
    if deviation == 0:
        raise ValueError("deviation 0: no direction")
    cancel = str(row.get("vi_cncl_hour", "")).strip()
    return {
        "stock_code": str(row["mksc_shrn_iscd"]).zfill(6),
        "trigger_ts": krx.parse_hhmmss(day, str(row["cntg_vi_hour"])),
        "release_ts": krx.parse_hhmmss(day, cancel) if cancel not in ("", "000000") else None,
        "vi_type": vi_type,
        "direction": 1 if deviation > 0 else -1,
        "ref_price": int(row["vi_stnd_prc"] if static else row["vi_dmc_stnd_prc"]),
        "trigger_price": int(row["vi_prc"]),
        "auction_price": None,  # the REST record has none; the uncross print gives it
    }


def find_sources(src: Path) -> tuple[list[Path], list[Path], Path]:
    if src.is_file():
        return [src], [], src.parent / STOCKS_FILE
    recordings = sorted(p for pattern in RECORDING_PATTERNS for p in src.glob(pattern))
    return recordings, sorted(src.glob(VI_STATUS_PATTERN)), src / STOCKS_FILE


def ingest_kis(src: Path, out: Path, stocks_path: Path | None = None) -> KisReport:
    """Read the recordings and VI-status responses of ``src``; write the tick dataset to ``out``."""
    recordings, vi_files, default_stocks = find_sources(src)
    if not recordings:
        raise IngestError(f"{src}: no KIS recordings (*.jsonl, *.jsonl.gz)")
    stocks = load_stocks(stocks_path or default_stocks)
    report, refused = KisReport(), Refused()
    unique: dict[tuple, dict] = {}
    for path in vi_files:
        _read_vi_status(path, refused, report, unique)
    vi_rows = sorted(unique.values(), key=lambda r: (r["trigger_ts"], r["stock_code"]))
    typed: list[tuple[str, Typed]] = []
    for file_no, path in enumerate(recordings):
        if path.stat().st_size == 0:
            raise IngestError(f"{path}: empty file")
        typed += _read_recording(path, file_no, stocks, report, refused)
    if not report.balanced:
        raise AssertionError("kis ingest lost lines or records: counts do not add up")
    spine, fields = _spine(typed)
    out.mkdir(parents=True, exist_ok=True)
    if refused.rows:
        target = out / "quarantine" / "ingest" / "kis.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(refused.rows), target)
    instruments = []
    if len(spine):
        feeds, report.clock_held = _run_feeds(spine, fields, sorted(stocks), vi_rows)
        spine = pd.concat([spine, feeds], axis=1)
        instruments = _instruments(spine, fields, stocks)
        rows = _rows(spine, fields, stocks, vi_rows)
        if rows.num_rows:
            report.stock_days, report.rows_written = write_ticks(rows, out, extra=(RECV_TS_FIELD,))
    pq.write_table(pa.Table.from_pylist(instruments, INSTRUMENT_SCHEMA), out / "instruments.parquet")
    if vi_rows:
        _write_vi_log(vi_rows, out / "vi_log.parquet")
    _write_summary(report, out / SUMMARY_FILE)
    return report


def _spine(typed: list[tuple[str, Typed]]) -> tuple[pd.DataFrame, dict[int, dict[str, np.ndarray]]]:
    """Every accepted record in arrival order per stock, ``src`` pointing into its kind's fields."""
    parts: dict[int, list[Typed]] = defaultdict(list)
    for tr_id, t in typed:
        parts[KINDS[tr_id]].append(t)
    spines, fields = [], {}
    for kind in (TRADE, BOOK, MARKET_OP, PROGRAM):
        mine = parts.get(kind, [])
        fields[kind] = {
            name: np.concatenate([t.fields[name] for t in mine]) for name in (mine[0].fields if mine else {})
        }
        for t in mine:
            spines.append(t.spine)
        if mine:
            n = [len(t.spine) for t in mine]
            for t, start in zip(mine, np.cumsum([0, *n[:-1]]), strict=True):
                t.spine["src"] = np.arange(len(t.spine)) + start
    if not spines:
        return pd.DataFrame(), fields
    spine = pd.concat(spines, ignore_index=True)
    order = np.lexsort((spine["order"].to_numpy(), spine["recv_us"].to_numpy(), spine["stock"].to_numpy()))
    return spine.iloc[order].reset_index(drop=True), fields


def _instruments(spine: pd.DataFrame, fields: dict, stocks: dict) -> list[dict]:
    codes = sorted(stocks)
    bases = _base_prices(spine, fields)
    missing = bases[bases.isna()]
    if len(missing):
        stock, day = missing.index[0]
        raise IngestError(
            f"stock {codes[stock]} on {krx.seoul_date(int(krx.day_start_us(day)))}: no 기준가 in the "
            f"recording (no trade and no book with the previous close); record from before the open"
        )
    rows = [
        _instrument(codes[stock], stocks[codes[stock]], day, int(base))
        for (stock, day), base in bases.items()
    ]
    return sorted(rows, key=lambda r: (r["date"], r["stock_code"]))


def _instrument(code: str, stock: dict, day: int, base_price: int) -> dict:
    """A row of instruments.parquet: a stock of ``stocks.csv`` on Seoul day number ``day``."""
    date = krx.seoul_date(int(krx.day_start_us(day)))
    return {"date": date, "stock_code": code, **stock, "base_price": base_price}


def _write_vi_log(vi_rows: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(vi_rows)
    for name in ("trigger_ts", "release_ts"):
        i = table.column_names.index(name)
        table = table.set_column(
            i, name, table[name].cast(pa.timestamp("us")).cast(VI_LOG_SCHEMA.field(name).type)
        )
    pq.write_table(table.select(VI_LOG_SCHEMA.names).cast(VI_LOG_SCHEMA), path)


def _write_summary(report: KisReport, path: Path) -> None:
    path.write_text(
        json.dumps(
            {
                "format": "kis-log",
                "files": report.files,
                "lines": report.lines,
                "data_frames": report.data_frames,
                "control_messages": dict(report.control),
                "lines_quarantined": report.lines_quarantined,
                "records": report.records,
                "records_accepted": report.records_accepted,
                "records_quarantined": report.records_quarantined,
                "drift": dict(report.drift),
                "unknown_codes": {" ".join(k): n for k, n in report.unknown_codes.items()},
                "halted_records": report.halted_records,
                "clock_held": report.clock_held,
                "vi_status_records": report.vi_records,
                "vi_status_accepted": report.vi_accepted,
                "vi_status_quarantined": report.vi_quarantined,
                "reasons": report.reasons,
                "has_vi_flags": True,
            },
            indent=2,
            ensure_ascii=False,
        )
    )


def _finish(columns: dict[str, np.ndarray]) -> pa.Table:
    """The session from the clock, the columns the KIS feed lacks, and timestamp types."""
    n = len(columns["timestamp"])
    columns["session"] = krx.session_labels_by_day(columns["timestamp"])
    for name in ("institution_net", "foreign_net", "individual_net"):
        columns[name] = np.zeros(n, dtype=np.int64)  # KIS publishes investor flows by REST only
    columns["news_flag"] = columns["disclosure_flag"] = np.zeros(n, dtype=bool)
    table = pa.table(columns)
    for name in ("timestamp", "recv_ts"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.cast(table[name], RECV_TS_FIELD.type))
    return table
