"""The KIS Open API real-time wire format (krx-market-rules.md), in one place: the recording
ingest, the recording exporter and (later) the live client and its loopback fake server all parse
and write frames here.

A data frame is text ``<encrypted 0|1>|<tr_id>|<record count, 3 digits>|f1^f2^...``: the fields of
every record joined by ``^``, split by the tr_id's field count. Anything that starts with ``{`` is
a JSON control message (subscribe acks, PINGPONG heartbeats, errors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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
# CCLD_DVSN 체결구분: 1 buy aggressor (매수), 3 single-price print (장전/단일가), 5 sell aggressor (매도)
SIDE_BY_CCLD_DVSN = {"1": 1, "3": 0, "5": -1}
CCLD_DVSN_BY_SIDE = {v: k for k, v in SIDE_BY_CCLD_DVSN.items()}
# FHPST01390000 (VI 현황) vi_kind_code
VI_TYPE_BY_KIND = {"1": "static", "2": "dynamic", "3": "both"}
KIND_BY_VI_TYPE = {v: k for k, v in VI_TYPE_BY_KIND.items()}


class FrameError(ValueError):
    """A frame that cannot be parsed; the message is the quarantine reason."""


@dataclass(frozen=True, slots=True)
class Records:
    tr_id: str
    records: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Control:
    """A JSON control message: ``kind`` is PINGPONG, the ack's msg1 (SUBSCRIBE SUCCESS ...) or
    the tr_id of anything else."""

    kind: str
    text: str


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
    parts = text.split("|", 3)
    if len(parts) != 4:
        raise FrameError("not a KIS frame: expected 4 '|'-separated parts")
    encrypted, tr_id, count_text, payload = parts
    if encrypted == "1":
        raise FrameError(f"encrypted frame ({tr_id}): AES-encrypted order notices are not market data")
    if encrypted != "0":
        raise FrameError(f"encrypted flag {encrypted!r} is neither 0 nor 1")
    names = FIELDS.get(tr_id)
    if names is None:
        raise FrameError(f"unknown tr_id {tr_id!r}")
    if not (len(count_text) == 3 and count_text.isdigit()) or int(count_text) == 0:
        raise FrameError(f"record count {count_text!r} is not a 3-digit number from 001")
    count = int(count_text)
    values = payload.split("^")
    if len(values) != count * len(names):
        raise FrameError(
            f"field count {len(values)} does not match {tr_id}: "
            f"{len(names)} fields per record, {count} records"
        )
    n = len(names)
    return Records(tr_id, [dict(zip(names, values[i * n : (i + 1) * n], strict=True)) for i in range(count)])


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
