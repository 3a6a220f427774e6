"""A KIS real-time recording read into typed records, column by column.

A recording is one JSON object per line, ``{"recv_ts": "<ISO-8601 with offset>", "frame": "<raw
text frame>"}`` (plain or gzip). :func:`read_lines` reads its lines with Arrow's JSON reader
(line by line only for a block that holds a broken line), :func:`typed_records` parses every frame
with :func:`market.kis.formats.parse_frames` and checks and converts the fields vicap uses, per
tr_id, a column at a time. Nothing is lost: every line is a data frame, a control message or
refused with its reason, and every record of a data frame is accepted or refused.
"""

from __future__ import annotations

import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from market import krx
from market.kis import formats as kis
from market.krx.schema import SIDE_UNKNOWN

STOCKS_FILE = "stocks.csv"
LINES_PER_BLOCK = 200_000  # a block with a broken line is read in parts of this many lines
BYTES_PER_BLOCK = 64 << 20
LINE_SCHEMA = pa.schema([("recv_ts", pa.string()), ("frame", pa.string())])
NOT_A_LINE = 'not a JSON object {"recv_ts", "frame"}'
KINDS = {kis.TRADES: 0, kis.BOOK: 1, kis.MARKET_OP: 2, kis.PROGRAM: 3}
TRADE, BOOK, MARKET_OP, PROGRAM = range(4)
LEVELS = range(1, 11)
_INT_FIELDS = {
    kis.TRADES: ("STCK_PRPR", "PRDY_VRSS", "CNTG_VOL", "ACML_VOL"),
    kis.BOOK: (
        *(f"{p}{i}" for p in ("ASKP", "BIDP", "ASKP_RSQN", "BIDP_RSQN") for i in LEVELS),
        "ANTC_CNPR",
        "ANTC_CNQN",
        "ANTC_CNTG_VRSS",
    ),
    kis.PROGRAM: ("NTBY_CNQN",),
    kis.MARKET_OP: (),
}
_TIME_FIELD = {kis.TRADES: "STCK_CNTG_HOUR", kis.BOOK: "BSOP_HOUR", kis.PROGRAM: "STCK_CNTG_HOUR"}


@dataclass
class Refused:
    """Refused lines and records, as the quarantine's rows, with their reasons counted."""

    rows: list[dict] = field(default_factory=list)

    def add(self, file: str, line: int, recv_ts: str, record: int, reason: str, raw: str) -> None:
        self.rows.append(
            {"file": file, "line": line, "recv_ts": recv_ts, "record": record, "reason": reason, "raw": raw}
        )


@dataclass
class Lines:
    """The readable lines of a file: line numbers, receive times (µs) and frames."""

    line: np.ndarray
    recv_ts: pa.Array
    recv_us: np.ndarray
    frame: pa.Array
    refused: list[tuple[int, str, str]]  # (line, reason, raw text)


def read_lines(path: Path) -> Iterator[Lines]:
    """The readable lines of a recording, a block of about :data:`BYTES_PER_BLOCK` at a time (a
    day of a watchlist is gigabytes of text: memory stays bounded), line numbers counted across
    blocks. An undecodable file raises UnicodeDecodeError, naming nothing but the file."""
    opener = gzip.open if path.suffix == ".gz" else open
    first_line, tail = 1, b""
    with opener(path, "rb") as fh:
        while True:
            chunk = fh.read(BYTES_PER_BLOCK)
            data = tail + chunk
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            if cut == 0 and chunk:  # one line longer than a block: read on
                tail = data
                continue
            block, tail = data[:cut], data[cut:]
            if block:
                yield _lines(block, first_line)
                first_line += block.count(b"\n")
            if not chunk:
                return


def _lines(raw: bytes, first_line: int) -> Lines:
    raw.decode("utf-8")  # an undecodable file is refused whole, naming it (UnicodeDecodeError)
    n_lines = raw.count(b"\n") + (not raw.endswith(b"\n"))
    table, refused = _read_block(raw), []  # the whole block at once: Arrow reads it on every core
    if table is not None and table.num_rows == n_lines:  # no blank line: row i is line i + 1
        table = table.append_column("line", pa.array(np.arange(n_lines) + first_line))
        lines = None
    else:  # blank or broken lines: block by block, a broken block line by line
        lines = raw.split(b"\n")
        table = _read_blocks(lines, refused)
        table = table.set_column(2, "line", pc.add(table["line"], first_line - 1))
    offset = first_line - 1

    def text(line: int) -> str:
        nonlocal lines
        lines = lines or raw.split(b"\n")
        return lines[line - offset - 1].decode()

    # _read_blocks counts the block's lines from 1
    refused = [(line + offset, reason, raw_text) for line, reason, raw_text in refused]
    missing = pc.or_(pc.is_null(table["recv_ts"]), pc.is_null(table["frame"])).to_numpy()
    if missing.any():
        for i in np.flatnonzero(missing):
            line = int(table["line"][i].as_py())
            refused.append((line, NOT_A_LINE, text(line)))
        table = table.filter(pa.array(~missing))
    recv_us, bad_time = _recv_us(table["recv_ts"])
    good = bad_time == ""
    if not good.all():
        for i in np.flatnonzero(~good):
            line = int(table["line"][i].as_py())
            refused.append((line, bad_time[i], text(line)))
        table, recv_us = table.filter(pa.array(good)), recv_us[good]
    table = table.combine_chunks()
    return Lines(
        table["line"].to_numpy(), table["recv_ts"].chunk(0), recv_us, table["frame"].chunk(0), refused
    )


def _read_blocks(lines: list[bytes], refused: list) -> pa.Table:
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    short = np.flatnonzero(lengths < 3)  # only a short line can be blank ("", "\r", " ")
    blank = short[[not lines[i].strip() for i in short.tolist()]]
    numbers = np.setdiff1d(np.arange(len(lines)), blank) + 1
    tables = []
    for start in range(0, len(numbers), LINES_PER_BLOCK):
        block = numbers[start : start + LINES_PER_BLOCK]
        table = _read_block(b"\n".join([lines[i - 1] for i in block]))
        if table is None:  # a broken line in the block: read it line by line
            table = _read_one_by_one(block, lines, refused)
        else:
            table = table.append_column("line", pa.array(block))
        tables.append(table)
    if not tables:
        return pa.table(
            {
                "recv_ts": pa.array([], pa.string()),
                "frame": pa.array([], pa.string()),
                "line": pa.array([], pa.int64()),
            }
        )
    return pa.concat_tables(tables)


def _read_block(text: bytes) -> pa.Table | None:
    options = pa_json.ParseOptions(explicit_schema=LINE_SCHEMA, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(io.BytesIO(text), parse_options=options)
    except pa.ArrowInvalid:
        return None
    return table.select(["recv_ts", "frame"])


def _read_one_by_one(block: np.ndarray, lines: list[bytes], refused: list) -> pa.Table:
    good: dict[str, list] = {"recv_ts": [], "frame": [], "line": []}
    for i in block.tolist():
        text = lines[i - 1].decode()
        try:
            obj = json.loads(text)
            recv, frame = obj["recv_ts"], obj["frame"]
        except (json.JSONDecodeError, KeyError, TypeError):
            refused.append((i, NOT_A_LINE, text))
            continue
        if not isinstance(frame, str) or not isinstance(recv, str):
            refused.append((i, "frame is not a string" if isinstance(recv, str) else NOT_A_LINE, text))
            continue
        good["recv_ts"].append(recv)
        good["frame"].append(frame)
        good["line"].append(i)
    return pa.table(
        {
            "recv_ts": pa.array(good["recv_ts"], pa.string()),
            "frame": pa.array(good["frame"], pa.string()),
            "line": pa.array(good["line"], pa.int64()),
        }
    )


def _recv_us(recv_ts: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(receive times in µs, the reason each cannot be read, "" where it can)."""
    reason = np.full(len(recv_ts), "", dtype=object)
    has_offset = pc.match_substring_regex(recv_ts, r"(Z|[+-]\d\d:?\d\d)$").to_numpy(zero_copy_only=False)
    try:
        us = pc.cast(pc.cast(recv_ts, pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy()
    except pa.ArrowInvalid:  # some text is not a time: find it
        text = pd.Series(recv_ts.to_numpy(zero_copy_only=False))
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        reason[parsed.isna().to_numpy()] = "recv_ts is not an ISO-8601 time"
        us = krx.series_us(parsed.fillna(pd.Timestamp(0, tz="UTC"))).to_numpy()
    reason[~has_offset] = "recv_ts has no UTC offset"
    return us, reason


class _Checks:
    """The first reason each record of a table is refused for ("" while it is not)."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, "", dtype=object)

    def reject(self, bad: np.ndarray, why) -> None:
        """``why``: a reason, or a function of the record's index giving one."""
        for i in np.flatnonzero(bad & (self.reason == "")):
            self.reason[i] = why(i) if callable(why) else why

    @property
    def ok(self) -> np.ndarray:
        return self.reason == ""


def _ints(tr_id: str, name: str, column: pa.Array, checks: _Checks) -> np.ndarray:
    try:
        return pc.cast(column, pa.int64()).to_numpy()
    except pa.ArrowInvalid:  # some text is not a number: find it
        pass
    text = pc.utf8_trim_whitespace(column)
    ok = pc.match_substring_regex(text, r"^-?\d{1,18}$").to_numpy(zero_copy_only=False)
    checks.reject(~ok, lambda i: f"{tr_id} {name}: {text[i].as_py()!r} is not an integer")
    return pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.int64()).to_numpy()


def _day_numbers(tr_id: str, table: pa.Table, recv_us: np.ndarray, checks: _Checks) -> np.ndarray:
    """Seoul day numbers: BSOP_DATE for trades, the receive day for the rest."""
    if tr_id != kis.TRADES:
        return krx.seoul_day_number(recv_us)
    text = table["BSOP_DATE"]
    days = pd.to_datetime(pd.Series(text.to_numpy(zero_copy_only=False)), format="%Y%m%d", errors="coerce")
    checks.reject(days.isna().to_numpy(), lambda i: f"{tr_id} BSOP_DATE: {text[i].as_py()!r} is not YYYYMMDD")
    return (days.fillna(pd.Timestamp(0)).to_numpy().astype("datetime64[D]").astype(np.int64)).astype(np.int64)


def _clock(tr_id: str, table: pa.Table, days: np.ndarray, recv_us: np.ndarray, checks: _Checks) -> np.ndarray:
    if tr_id not in _TIME_FIELD:  # H0STMKO0 has no time: the second it was received
        return recv_us // krx.US_PER_SECOND * krx.US_PER_SECOND
    name = _TIME_FIELD[tr_id]
    text = table[name]
    digits = pc.and_(pc.equal(pc.utf8_length(text), 6), pc.utf8_is_digit(text)).to_numpy(zero_copy_only=False)
    hhmmss = pc.cast(pc.if_else(pa.array(digits), text, "0"), pa.int64()).to_numpy()
    h, m, s = hhmmss // 10_000, hhmmss // 100 % 100, hhmmss % 100
    ok = digits & (h < 24) & (m < 60) & (s < 60)
    checks.reject(~ok, lambda i: f"{tr_id} {name}: time {text[i].as_py()!r} is not HHMMSS")
    return krx.day_start_us(days) + (h * 3600 + m * 60 + s) * krx.US_PER_SECOND


@dataclass
class Typed:
    """Accepted records of one tr_id: ``spine`` (what the feed state needs, one row a record) and
    ``fields`` (the converted fields, same rows)."""

    spine: pd.DataFrame
    fields: dict[str, np.ndarray]


def typed_records(
    tr_id: str, table: pa.Table, lines: Lines, file_no: int, stock_codes: list[str], codes: Counter
) -> tuple[Typed, _Checks]:
    """Check and convert the records of one tr_id; ``stock`` in the spine is the index into
    ``stock_codes`` (sorted); ``codes`` counts code values read that the KIS documentation does
    not list (taken as their nearest meaning, never refused)."""
    n = table.num_rows
    checks = _Checks(n)
    frame = table["frame"].to_numpy()
    recv_us = lines.recv_us[frame]
    code = pc.utf8_trim_whitespace(table["MKSC_SHRN_ISCD"])
    known = pc.is_in(code, pa.array(stock_codes, pa.string())).to_numpy(zero_copy_only=False)
    checks.reject(~known, lambda i: f"stock_code {code[i].as_py()!r} is not in {STOCKS_FILE}")
    ints = {name: _ints(tr_id, name, table[name], checks) for name in _INT_FIELDS[tr_id]}
    days = _day_numbers(tr_id, table, recv_us, checks)
    side = np.zeros(n, dtype=np.int8)
    hour = np.zeros(n, dtype=np.int8)  # index into HOUR_CLS_CODES
    vi_on = np.zeros(n, dtype=bool)
    halted = (
        pc.equal(table["TRHT_YN"], "Y").to_numpy(zero_copy_only=False)
        if "TRHT_YN" in table.column_names
        else np.zeros(n, bool)
    )
    if tr_id in (kis.TRADES, kis.BOOK):
        text = table["HOUR_CLS_CODE"]
        hour = pc.index_in(text, pa.array(kis.HOUR_CLS_CODES)).to_numpy(zero_copy_only=False)
        unknown = np.isnan(hour)
        codes.update((tr_id, "HOUR_CLS_CODE", text[i].as_py()) for i in np.flatnonzero(unknown))
        hour = np.where(unknown, 0, hour).astype(np.int8)  # a new code is not taken for a call auction
    static_ref = np.zeros(n, dtype=np.int64)
    if tr_id == kis.TRADES:
        side = _trade_sides(table, checks)
        text = table["VI_STND_PRC"]  # empty where the record was cut before it
        known_ref = pc.match_substring_regex(text, r"^\d{1,12}$").to_numpy(zero_copy_only=False)
        static_ref = pc.cast(pc.if_else(pa.array(known_ref), text, "0"), pa.int64()).to_numpy()
        checks.reject(
            (ints["STCK_PRPR"] <= 0) | (ints["CNTG_VOL"] <= 0),
            f"{tr_id} STCK_PRPR/CNTG_VOL: price and volume must be positive",
        )
    if tr_id == kis.MARKET_OP:
        flag = table["VI_CLS_CODE"]
        vi_on = pc.equal(flag, "Y").to_numpy(zero_copy_only=False)
        yes_no = pc.is_in(flag, pa.array(["Y", "N"])).to_numpy(zero_copy_only=False)
        checks.reject(~yes_no, lambda i: f"{tr_id} VI_CLS_CODE: {flag[i].as_py()!r} is neither Y nor N")
    stamp = _clock(tr_id, table, days, recv_us, checks)
    ok = checks.ok
    spine = pd.DataFrame(
        {
            "stock": np.searchsorted(stock_codes, code.to_numpy(zero_copy_only=False)[ok]),
            "recv_us": recv_us[ok],
            "order": (file_no * 2**40 + lines.line[frame[ok]] * 2**10 + table["record"].to_numpy()[ok]),
            "kind": KINDS[tr_id],
            "day": days[ok],
            "stamp_us": stamp[ok],
            "side": side[ok],
            "hour": hour[ok],
            "vi_on": vi_on[ok],
            "static_ref": static_ref[ok],
            "halted": halted[ok],
        }
    )
    return Typed(spine, {name: v[ok] for name, v in ints.items()}), checks


def _trade_sides(table: pa.Table, checks: _Checks) -> np.ndarray:
    """The aggressor side by CCLD_DVSN, none where NEW_MKOP_CLS_CODE says the print has none."""
    ccld = table["CCLD_DVSN"]
    known = pc.is_in(ccld, pa.array(list(kis.SIDE_BY_CCLD_DVSN))).to_numpy(zero_copy_only=False)
    checks.reject(~known, lambda i: f"{kis.TRADES} CCLD_DVSN: unknown code {ccld[i].as_py()!r}")
    side = np.select(
        [pc.equal(ccld, code).to_numpy(zero_copy_only=False) for code in kis.SIDE_BY_CCLD_DVSN],
        list(kis.SIDE_BY_CCLD_DVSN.values()),
        0,
    ).astype(np.int8)
    mkop = table["NEW_MKOP_CLS_CODE"]
    session, kind = pc.utf8_slice_codeunits(mkop, 0, 1), pc.utf8_slice_codeunits(mkop, 1, 2)
    single_price = pc.equal(session, kis.MKOP_OFF_HOURS_SINGLE_PRICE).to_numpy(zero_copy_only=False)
    no_aggressor = pc.or_(
        pc.is_in(session, pa.array(kis.MKOP_CLOSING_PRICE_SESSIONS)),
        pc.is_in(kind, pa.array(kis.MKOP_NEGOTIATED)),
    ).to_numpy(zero_copy_only=False)
    side[no_aggressor & (side != 0)] = SIDE_UNKNOWN
    side[single_price] = 0
    return side
