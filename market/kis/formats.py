"""The KIS Open API real-time wire format (krx-market-rules.md), in one place: the recording
ingest, the recording exporter and (later) the live client and its loopback fake server all parse
and write frames here.

A data frame is text ``<encrypted 0|1>|<tr_id>|<record count, 3 digits>|f1^f2^...``: the fields of
every record joined by ``^``. Anything that starts with ``{`` is a JSON control message (subscribe
acks, PINGPONG heartbeats, errors).

KIS changes field counts without notice (krx-market-rules.md, "Known field hazards"): H0STASP0
records of 62 and 63 fields where 59 are documented, an H0STCNT0 field added in 2026, the portal's
own H0STMKO0 example one field short. So the record width is the frame's field count divided by
its record count; a record is read by its documented prefix, the drift is reported, and a record
is refused only when it lacks a field vicap uses (:data:`USED`), naming it.

:func:`parse_frame` reads one frame (the live client); :func:`parse_frames` reads a column of
frames at once with Arrow (recording ingest): same rules, same reasons.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# H0STCNT0: 체결 (trades), 46 fields
TRADE_FIELDS = [
    "MKSC_SHRN_ISCD",
    "STCK_CNTG_HOUR",
    "STCK_PRPR",
    "PRDY_VRSS_SIGN",
    "PRDY_VRSS",
    "PRDY_CTRT",
    "WGHN_AVRG_STCK_PRC",
    "STCK_OPRC",
    "STCK_HGPR",
    "STCK_LWPR",
    "ASKP1",
    "BIDP1",
    "CNTG_VOL",
    "ACML_VOL",
    "ACML_TR_PBMN",
    "SELN_CNTG_CSNU",
    "SHNU_CNTG_CSNU",
    "NTBY_CNTG_CSNU",
    "CTTR",
    "SELN_CNTG_SMTN",
    "SHNU_CNTG_SMTN",
    "CCLD_DVSN",
    "SHNU_RATE",
    "PRDY_VOL_VRSS_ACML_VOL_RATE",
    "OPRC_HOUR",
    "OPRC_VRSS_PRPR_SIGN",
    "OPRC_VRSS_PRPR",
    "HGPR_HOUR",
    "HGPR_VRSS_PRPR_SIGN",
    "HGPR_VRSS_PRPR",
    "LWPR_HOUR",
    "LWPR_VRSS_PRPR_SIGN",
    "LWPR_VRSS_PRPR",
    "BSOP_DATE",
    "NEW_MKOP_CLS_CODE",
    "TRHT_YN",
    "ASKP_RSQN1",
    "BIDP_RSQN1",
    "TOTAL_ASKP_RSQN",
    "TOTAL_BIDP_RSQN",
    "VOL_TNRT",
    "PRDY_SMNS_HOUR_ACML_VOL",
    "PRDY_SMNS_HOUR_ACML_VOL_RATE",
    "HOUR_CLS_CODE",
    "MRKT_TRTM_CLS_CODE",
    "VI_STND_PRC",
]
# H0STASP0: 호가 (10-level book and the indicative auction price 예상체결가), 59 fields
BOOK_FIELDS = (
    ["MKSC_SHRN_ISCD", "BSOP_HOUR", "HOUR_CLS_CODE"]
    + [f"ASKP{i}" for i in range(1, 11)]
    + [f"BIDP{i}" for i in range(1, 11)]
    + [f"ASKP_RSQN{i}" for i in range(1, 11)]
    + [f"BIDP_RSQN{i}" for i in range(1, 11)]
    + [
        "TOTAL_ASKP_RSQN",
        "TOTAL_BIDP_RSQN",
        "OVTM_TOTAL_ASKP_RSQN",
        "OVTM_TOTAL_BIDP_RSQN",
        "ANTC_CNPR",
        "ANTC_CNQN",
        "ANTC_VOL",
        "ANTC_CNTG_VRSS",
        "ANTC_CNTG_VRSS_SIGN",
        "ANTC_CNTG_PRDY_CTRT",
        "ACML_VOL",
        "TOTAL_ASKP_RSQN_ICDC",
        "TOTAL_BIDP_RSQN_ICDC",
        "OVTM_TOTAL_ASKP_ICDC",
        "OVTM_TOTAL_BIDP_ICDC",
        "STCK_DEAL_CLS_CODE",
    ]
)
# H0STPGM0: 프로그램매매 (program trading), 11 fields
PROGRAM_FIELDS = [
    "MKSC_SHRN_ISCD",
    "STCK_CNTG_HOUR",
    "SELN_CNQN",
    "SELN_TR_PBMN",
    "SHNU_CNQN",
    "SHNU_TR_PBMN",
    "NTBY_CNQN",
    "NTBY_TR_PBMN",
    "SELN_RSQN",
    "SHNU_RSQN",
    "WHOL_NTBY_QTY",
]
# H0STMKO0: 장운영정보 (market operation; pushed when a VI starts and ends), 11 fields
MARKET_OP_FIELDS = [
    "MKSC_SHRN_ISCD",
    "TRHT_YN",
    "TR_SUSP_REAS_CNTT",
    "MKOP_CLS_CODE",
    "ANTC_MKOP_CLS_CODE",
    "MRKT_TRTM_CLS_CODE",
    "DIVI_APP_CLS_CODE",
    "ISCD_STAT_CLS_CODE",
    "VI_CLS_CODE",
    "OVTM_VI_CLS_CODE",
    "EXCH_CLS_CODE",
]

TRADES, BOOK, PROGRAM, MARKET_OP = "H0STCNT0", "H0STASP0", "H0STPGM0", "H0STMKO0"
FIELDS: dict[str, list[str]] = {
    TRADES: TRADE_FIELDS,
    BOOK: BOOK_FIELDS,
    PROGRAM: PROGRAM_FIELDS,
    MARKET_OP: MARKET_OP_FIELDS,
}
# The fields vicap reads, per tr_id. KIS appends fields without notice and its own examples miss
# trailing ones: a record is read by its known prefix, and only a missing field named here
# quarantines it; a missing field not named here is read as empty.
USED: dict[str, tuple[str, ...]] = {
    TRADES: (
        "MKSC_SHRN_ISCD",
        "STCK_CNTG_HOUR",
        "STCK_PRPR",
        "PRDY_VRSS",
        "CNTG_VOL",
        "ACML_VOL",
        "CCLD_DVSN",
        "BSOP_DATE",
        "NEW_MKOP_CLS_CODE",
        "TRHT_YN",
        "HOUR_CLS_CODE",
    ),
    BOOK: (
        "MKSC_SHRN_ISCD",
        "BSOP_HOUR",
        "HOUR_CLS_CODE",
        *BOOK_FIELDS[3:43],
        "ANTC_CNPR",
        "ANTC_CNQN",
        "ANTC_CNTG_VRSS",
    ),
    PROGRAM: ("MKSC_SHRN_ISCD", "STCK_CNTG_HOUR", "NTBY_CNQN"),
    MARKET_OP: ("MKSC_SHRN_ISCD", "TRHT_YN", "VI_CLS_CODE"),
}
# The fewest fields a record may have: up to the last field vicap uses.
MIN_WIDTH = {tr_id: max(FIELDS[tr_id].index(name) for name in used) + 1 for tr_id, used in USED.items()}
# Fields read where a record has them, empty where it was cut before them.
OPTIONAL: dict[str, tuple[str, ...]] = {
    TRADES: ("VI_STND_PRC",),  # 정적VI발동기준가: a single-price print resets it to its price
    BOOK: (),
    PROGRAM: (),
    MARKET_OP: (),
}
# CCLD_DVSN 체결구분: 1 buy aggressor (매수), 3 single-price print (장전/단일가), 5 sell aggressor (매도)
SIDE_BY_CCLD_DVSN = {"1": 1, "3": 0, "5": -1}
CCLD_DVSN_BY_SIDE = {v: k for k, v in SIDE_BY_CCLD_DVSN.items()}
# HOUR_CLS_CODE 시간구분코드 (H0STCNT0, H0STASP0): 0 장중 (continuous); the others mean a call
# auction is collecting orders and the book shows its expected price: A 장후예상 (closing call),
# B 장전예상 (opening call), C 9시이후의 예상가, VI발동 (a VI auction), D 시간외 단일가 예상
HOUR_CONTINUOUS, HOUR_VI = "0", "C"
HOUR_CLS_CODES = ("0", "A", "B", "C", "D")
# NEW_MKOP_CLS_CODE 신장운영구분코드, two digits. The first: 1 장개시전, 2 장중, 3 장종료후,
# 4 시간외단일가, 7 일반Buy-in, 8 당일Buy-in; the second: 0 보통, 1 종가, 2 대량, 3 바스켓,
# 7 정리매매, 8 Buy-in. KIS's own examples also carry 00 and 49, so unknown digits are kept.
MKOP_OFF_HOURS_SINGLE_PRICE = "4"  # a print of the 16:00-18:00 single-price auctions: side 0
MKOP_CLOSING_PRICE_SESSIONS = ("1", "3")  # 시간외 종가 (08:30-08:40, 15:40-16:00): no aggressor
MKOP_NEGOTIATED = ("2", "3")  # second digit 대량 (block) and 바스켓 (basket): no aggressor
# TRHT_YN 거래정지여부: Y halted, N trading
# FHPST01390000 (VI 현황) vi_kind_code
VI_TYPE_BY_KIND = {"1": "static", "2": "dynamic", "3": "both"}
KIND_BY_VI_TYPE = {v: k for k, v in VI_TYPE_BY_KIND.items()}


class FrameError(ValueError):
    """A frame that cannot be parsed; the message is the quarantine reason."""


@dataclass(frozen=True, slots=True)
class Records:
    """The records of one data frame; ``width`` is the fields each record had on the wire (more
    than the documented layout: KIS appended fields, read past; fewer: unused trailing fields
    missing, read as empty)."""

    tr_id: str
    records: list[dict[str, str]]
    width: int

    @property
    def drift(self) -> int:
        return self.width - len(FIELDS[self.tr_id])


@dataclass(frozen=True, slots=True)
class Control:
    """A JSON control message: ``kind`` is PINGPONG, the ack's msg1 (SUBSCRIBE SUCCESS ...) or
    the tr_id of anything else."""

    kind: str
    text: str


def record_width(tr_id: str, count: int, n_values: int) -> int:
    """The fields per record of a frame of ``count`` records and ``n_values`` fields in all;
    raises :class:`FrameError` where they cannot be split, or a used field is missing."""
    names = FIELDS[tr_id]
    if n_values % count:
        raise FrameError(
            f"field count {n_values} does not split into {count} records of {tr_id} "
            f"({len(names)} fields per record documented)"
        )
    width = n_values // count
    if width < MIN_WIDTH[tr_id]:
        missing = next(name for name in USED[tr_id] if names.index(name) >= width)
        raise FrameError(
            f"{tr_id} record of {width} fields lacks {missing} (field {names.index(missing) + 1} "
            f"of {len(names)})"
        )
    return width


def split_header(text: str) -> tuple[str, int, str]:
    """(tr_id, record count, payload) of a data frame; raises :class:`FrameError`."""
    parts = text.split("|", 3)
    if len(parts) != 4:
        raise FrameError("not a KIS frame: expected 4 '|'-separated parts")
    encrypted, tr_id, count_text, payload = parts
    if encrypted == "1":
        raise FrameError(f"encrypted frame ({tr_id}): AES-encrypted order notices are not market data")
    if encrypted != "0":
        raise FrameError(f"encrypted flag {encrypted!r} is neither 0 nor 1")
    if tr_id not in FIELDS:
        raise FrameError(f"unknown tr_id {tr_id!r}")
    if not (len(count_text) == 3 and count_text.isdigit()) or int(count_text) == 0:
        raise FrameError(f"record count {count_text!r} is not a 3-digit number from 001")
    return tr_id, int(count_text), payload


def parse_frame(text: str) -> Records | Control:
    """One received text frame; raises :class:`FrameError` naming what is wrong."""
    if text.startswith("{"):
        try:
            msg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FrameError(f"control message is not JSON ({exc.msg})") from exc
        header = msg.get("header", {}) if isinstance(msg, dict) else {}
        body = msg.get("body", {}) if isinstance(msg, dict) else {}
        tr_id = header.get("tr_id", "") if isinstance(header, dict) else ""
        kind = tr_id if tr_id == "PINGPONG" else (body.get("msg1") if isinstance(body, dict) else None)
        return Control(str(kind or tr_id or "unknown control message").strip(), text)
    tr_id, count, payload = split_header(text)
    values = payload.split("^")
    width = record_width(tr_id, count, len(values))
    names = FIELDS[tr_id]
    records = []
    for i in range(count):
        record = dict.fromkeys(names, "")
        record.update(zip(names, values[i * width : (i + 1) * width], strict=False))
        records.append(record)
    return Records(tr_id, records, width)


@dataclass
class FrameBatch:
    """What :func:`parse_frames` made of a column of frames: one table per tr_id with a row per
    record (the fields vicap uses, :data:`USED` and :data:`OPTIONAL`, as text; ``frame``: the
    frame's index in the input; ``record``: its place in the frame), the control messages and
    the refused frames by index, and the records read with a drifted width, counted per (tr_id,
    width)."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    control: dict[int, Control] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    drift: Counter = field(default_factory=Counter)


HEADER_LENGTH = 15  # "0|H0STCNT0|001|": plain flag, an 8-character tr_id, a 3-digit count
FRAMES_PER_BLOCK = 200_000


def parse_frames(frames: pa.Array) -> FrameBatch:
    """Every frame of ``frames`` (text) with Arrow kernels, a block of frames a core (Arrow lets
    go of the GIL); the few that are not plain data frames of a known tr_id go through
    :func:`parse_frame` one by one for their reason."""
    starts = range(0, len(frames), FRAMES_PER_BLOCK)
    if len(starts) == 1:  # one block (the live feed's batches): no pool to start
        parts = [_parse_block(frames)]
    else:
        with ThreadPoolExecutor() as pool:
            parts = list(pool.map(lambda start: _parse_block(frames.slice(start, FRAMES_PER_BLOCK)), starts))
    batch = FrameBatch()
    tables: dict[str, list[pa.Table]] = {}
    for start, part in zip(starts, parts, strict=True):
        for tr_id, table in part.tables.items():
            frame = pc.add(table["frame"], start)
            tables.setdefault(tr_id, []).append(
                table.set_column(table.column_names.index("frame"), "frame", frame)
            )
        batch.control.update({i + start: c for i, c in part.control.items()})
        batch.errors.update({i + start: e for i, e in part.errors.items()})
        batch.drift.update(part.drift)
    batch.tables = {tr_id: pa.concat_tables(t) for tr_id, t in tables.items()}
    return batch


def _parse_block(frames: pa.Array) -> FrameBatch:
    batch = FrameBatch()
    head = pc.utf8_slice_codeunits(frames, 0, HEADER_LENGTH)
    tr_ids = pc.utf8_slice_codeunits(head, 2, 10)
    plain = pc.match_substring_regex(head, r"^0\|[A-Z0-9]{8}\|\d\d\d\|$").to_numpy(zero_copy_only=False)
    counts = pc.cast(pc.if_else(plain, pc.utf8_slice_codeunits(head, 11, 14), "0"), pa.int64()).to_numpy()
    # one split of every frame; a frame's first value still carries its header
    values = pc.split_pattern(frames, "^")
    offsets = values.offsets.to_numpy()
    flat = values.values
    widths = np.zeros(len(frames), dtype=np.int64)
    np.floor_divide(np.diff(offsets), counts, out=widths, where=counts > 0)
    claimed = np.zeros(len(frames), dtype=bool)  # the rest go one by one, for their reason
    for tr_id in FIELDS:
        mine = plain & (counts > 0) & pc.equal(tr_ids, tr_id).to_numpy(zero_copy_only=False)
        mine &= (np.diff(offsets) == widths * counts) & (widths >= MIN_WIDTH[tr_id])
        claimed |= mine
        rows = np.flatnonzero(mine)
        if not len(rows):
            continue
        for width in np.unique(widths[rows]).tolist():
            these = rows[widths[rows] == width]
            batch.tables.setdefault(tr_id, []).append(
                _records(tr_id, width, these, counts[these], offsets, flat)
            )
            if width != len(FIELDS[tr_id]):
                batch.drift[(tr_id, width)] += int(counts[these].sum())
    batch.tables = {tr_id: pa.concat_tables(tables) for tr_id, tables in batch.tables.items()}
    for i in np.flatnonzero(~claimed).tolist():
        try:
            parsed = parse_frame(frames[i].as_py() or "")
        except FrameError as exc:
            batch.errors[i] = str(exc)
            continue
        if isinstance(parsed, Control):
            batch.control[i] = parsed
        else:  # not reached: a data frame the kernels refused is refused here too
            raise AssertionError(f"frame {i} parsed one by one but not in bulk")
    return batch


def _records(
    tr_id: str, width: int, rows: np.ndarray, counts: np.ndarray, offsets: np.ndarray, flat: pa.Array
) -> pa.Table:
    """The records of frames ``rows`` (all of ``width`` fields a record) as a table: field j of
    record k of frame f is value ``offsets[f] + k * width + j`` of the split frames."""
    first = np.repeat(offsets[rows], counts)
    record = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    start = first + record * width
    index = {name: j for j, name in enumerate(FIELDS[tr_id])}
    columns = {name: flat.take(start + index[name]) for name in USED[tr_id]}
    empty = pa.array(np.full(len(start), "", dtype=object), pa.string())
    columns |= {
        name: flat.take(start + index[name]) if index[name] < width else empty for name in OPTIONAL[tr_id]
    }
    code = columns["MKSC_SHRN_ISCD"]  # the frame's first record: the header is still in front
    columns["MKSC_SHRN_ISCD"] = pc.if_else(
        pa.array(record == 0), pc.utf8_slice_codeunits(code, HEADER_LENGTH), code
    )
    columns["frame"] = pa.array(np.repeat(rows, counts))
    columns["record"] = pa.array(record)
    return pa.table(columns)


def format_frame(tr_id: str, records: list[dict[str, object]]) -> str:
    """The text frame of ``records`` (a missing field is sent as empty)."""
    names = FIELDS[tr_id]
    payload = "^".join(str(r.get(name, "")) for r in records for name in names)
    return f"0|{tr_id}|{len(records):03d}|{payload}"


def pingpong(ts_text: str) -> str:
    return json.dumps({"header": {"tr_id": "PINGPONG", "datetime": ts_text}})


def subscribe_ack(tr_id: str, tr_key: str) -> str:
    return json.dumps(
        {
            "header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"},
            "body": {"rt_cd": "0", "msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS"},
        }
    )
