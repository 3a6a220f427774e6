"""A tick dataset written as a KIS real-time recording: what a user's recorder would have saved had
it subscribed to these stocks on that day (H0STCNT0, H0STASP0, H0STPGM0, H0STMKO0 frames with
subscribe acks and PINGPONG heartbeats), plus the VI-status REST response and the stock list.

It gives ``vicap ingest --format kis-log`` a recording whose truth is known, and feeds the loopback
fake KIS server. The feed's limits are kept: exchange times in whole seconds, no investor flows,
no news flags, receive times a few milliseconds after the event.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from market import krx
from market.kis import formats as kis
from market.kis.ingest import STOCKS_FILE
from market.krx.dataset import MEMBERSHIP, IngestError

MAX_BATCH = 10  # records per frame when several arrive at one instant (the open, the close)
PING_EVERY_US = 100_000_000  # KIS sends a PINGPONG heartbeat about every 100 s
PINGPONG = "PINGPONG"
# NEW_MKOP_CLS_CODE of a print by session (formats.py has the table): the regular session's prints,
# its call auctions' included, are 장중 보통 (20), as in every published frame
NEW_MKOP_BY_SESSION = {"post_close": "30", "off_hours": "40"}
NEW_MKOP_REGULAR = "20"
# HOUR_CLS_CODE of a book while a call auction collects orders (else 0 장중)
CALL_HOUR_BY_SESSION = {"opening_auction": "B", "closing_auction": "A", "off_hours": "D"}
# MKOP_CLS_CODE (장운영구분코드) of H0STMKO0 by session: 110 장전 동시호가 개시, 112 장개시,
# 121 장후 동시호가 개시, 129 장마감, 150 시간외 단일가 매매 개시
MKOP_BY_SESSION = {
    "opening_auction": "110",
    "continuous": "112",
    "closing_auction": "121",
    "post_close": "129",
    "off_hours": "150",
    "closed": "129",
}


def _sign(change: int) -> str:
    return "2" if change > 0 else ("5" if change < 0 else "3")  # 전일대비부호: 2 up, 3 flat, 5 down


def _pct(price: int, ref: int) -> str:
    return f"{(price - ref) / ref * 100:.2f}" if ref else "0.00"


def stock_records(
    ticks, code: str, base: int, day: dt.date
) -> tuple[list[tuple[int, str, dict]], list[dict]]:
    """(ts_us, tr_id, record) of one stock-day in event order, and the REST rows of its VIs."""
    cols = ticks.to_pydict()
    ts_us = ticks["timestamp"].cast("int64").to_pylist()
    out: list[tuple[int, str, dict]] = []
    vi_rows: list[dict] = []
    bsop = day.strftime("%Y%m%d")
    static_ref, open_, high, low, value = base, 0, 0, 0, 0
    bid1 = ask1 = bidq1 = askq1 = 0
    program = 0
    last_price = before_last = last_ts = 0
    vi_running = False
    for i, ts in enumerate(ts_us):
        kind, price, hhmmss = cols["event_type"][i], cols["price"][i], krx.hhmmss(ts)
        if cols["program_net_buy"][i] != program:
            program = cols["program_net_buy"][i]
            rec = {"MKSC_SHRN_ISCD": code, "STCK_CNTG_HOUR": hhmmss, "NTBY_CNQN": program}
            out.append((ts, kis.PROGRAM, rec | {"WHOL_NTBY_QTY": program}))
        if kind == "trade":
            volume, side = cols["volume"][i], cols["side"][i]
            if side not in kis.CCLD_DVSN_BY_SIDE:
                raise IngestError(
                    f"stock {code} at {krx.from_us(ts)}: a trade without an aggressor side has no "
                    f"CCLD_DVSN code; only data with sides can be written as KIS frames"
                )
            open_ = open_ or price
            high, low = max(high, price), min(low or price, price)
            value += price * volume
            cum = cols["cum_volume"][i]
            rec = {
                "MKSC_SHRN_ISCD": code,
                "STCK_CNTG_HOUR": hhmmss,
                "STCK_PRPR": price,
                "PRDY_VRSS_SIGN": _sign(price - base),
                "PRDY_VRSS": price - base,
                "PRDY_CTRT": _pct(price, base),
                "WGHN_AVRG_STCK_PRC": f"{value / cum:.2f}",
                "STCK_OPRC": open_,
                "STCK_HGPR": high,
                "STCK_LWPR": low,
                "ASKP1": ask1,
                "BIDP1": bid1,
                "CNTG_VOL": volume,
                "ACML_VOL": cum,
                "ACML_TR_PBMN": value,
                "CCLD_DVSN": kis.CCLD_DVSN_BY_SIDE[side],
                "BSOP_DATE": bsop,
                "NEW_MKOP_CLS_CODE": NEW_MKOP_BY_SESSION.get(cols["session"][i], NEW_MKOP_REGULAR),
                "TRHT_YN": "N",
                "ASKP_RSQN1": askq1,
                "BIDP_RSQN1": bidq1,
                "HOUR_CLS_CODE": "0",
                "MRKT_TRTM_CLS_CODE": "",  # empty in every published frame
                # every single-price print resets the static reference (to its own price)
                "VI_STND_PRC": price if side == 0 else static_ref,
            }
            out.append((ts, kis.TRADES, rec))
            if side == 0:
                static_ref = price
            if ts > last_ts:
                before_last = last_price
            last_price, last_ts = price, ts
        elif kind in ("book", "indicative"):
            bid1, ask1 = cols["bid_price_1"][i], cols["ask_price_1"][i]
            bidq1, askq1 = cols["bid_volume_1"][i], cols["ask_volume_1"][i]
            in_vi = cols["vi_status"][i] == 1 and kind == "indicative"
            hour = kis.HOUR_VI if in_vi else CALL_HOUR_BY_SESSION.get(cols["session"][i], kis.HOUR_CONTINUOUS)
            rec = {"MKSC_SHRN_ISCD": code, "BSOP_HOUR": hhmmss, "HOUR_CLS_CODE": hour}
            for n in range(1, 11):
                rec[f"ASKP{n}"], rec[f"BIDP{n}"] = cols[f"ask_price_{n}"][i], cols[f"bid_price_{n}"][i]
                rec[f"ASKP_RSQN{n}"] = cols[f"ask_volume_{n}"][i]
                rec[f"BIDP_RSQN{n}"] = cols[f"bid_volume_{n}"][i]
            rec["TOTAL_ASKP_RSQN"] = sum(cols[f"ask_volume_{n}"][i] for n in range(1, 11))
            rec["TOTAL_BIDP_RSQN"] = sum(cols[f"bid_volume_{n}"][i] for n in range(1, 11))
            antc = price if kind == "indicative" else 0
            rec |= {  # outside a call KIS sends 0 and its change from the previous close: -base
                "ANTC_CNPR": antc,
                "ANTC_CNQN": cols["volume"][i] if antc else 0,
                "ANTC_CNTG_VRSS": antc - base,
                "ANTC_CNTG_VRSS_SIGN": _sign(antc - base),
                "ANTC_CNTG_PRDY_CTRT": _pct(antc, base),
                "ACML_VOL": cols["cum_volume"][i],
                "STCK_DEAL_CLS_CODE": "0",
            }
            out.append((ts, kis.BOOK, rec))
        else:  # status
            on = cols["vi_status"][i] == 1
            rec = {
                "MKSC_SHRN_ISCD": code,
                "TRHT_YN": "N",
                "MKOP_CLS_CODE": MKOP_BY_SESSION[cols["session"][i]],
                "VI_CLS_CODE": "Y" if on else "N",
                "OVTM_VI_CLS_CODE": "N",
                "EXCH_CLS_CODE": "KRX",
            }
            out.append((ts, kis.MARKET_OP, rec))
            # a VI still running when the closing call starts is flagged again then: one record
            if on and not vi_running:
                dynamic_ref = (before_last if last_ts == ts else last_price) or base
                vi_rows.append(
                    {
                        "ts": ts,
                        "vi_type": cols["vi_type"][i],
                        "trigger_price": price,
                        "static_ref": static_ref,
                        "dynamic_ref": dynamic_ref,
                    }
                )
            vi_running = on
    return out, vi_rows


def _vi_status_output(code: str, name: str, day: dt.date, vi_rows: list[dict], releases: dict) -> list[dict]:
    """FHPST01390000 output rows (VI 현황), newest first as the API returns them."""
    rows = []
    for n, v in enumerate(vi_rows, start=1):
        release = releases.get(v["ts"])
        rows.append(
            {
                "hts_kor_isnm": name,
                "mksc_shrn_iscd": code,
                "vi_cls_code": "N" if release else "Y",
                "bsop_date": day.strftime("%Y%m%d"),
                "cntg_vi_hour": krx.hhmmss(v["ts"]),
                "vi_cncl_hour": krx.hhmmss(release) if release else "",
                "vi_kind_code": kis.KIND_BY_VI_TYPE[v["vi_type"]],
                "vi_prc": str(v["trigger_price"]),
                "vi_stnd_prc": str(v["static_ref"]),
                "vi_dprt": _pct(v["trigger_price"], v["static_ref"]),
                "vi_dmc_stnd_prc": str(v["dynamic_ref"]),
                "vi_dmc_dprt": _pct(v["trigger_price"], v["dynamic_ref"]),
                "vi_count": str(n),
            }
        )
    return rows[::-1]


@dataclass(frozen=True)
class Feed:
    """One day of a dataset as the KIS feed carries it to a subscriber of ``codes``: ``frames`` are
    (receive µs, tr_id, stock code, text) in receive order, data frames (one stock and one tr_id a
    frame, batched as KIS batches them) with PINGPONG heartbeats (tr_id PINGPONG, no stock) among
    them; ``vis`` are the VIs behind the VI-status REST rows. The one source of the exporter and of
    the loopback fake KIS server (serving/fake_kis.py)."""

    day: dt.date
    codes: list[str]
    names: dict[str, str]
    frames: list[tuple[int, str, str, str]]
    vis: list[tuple[str, dict, int | None]]  # (stock, stock_records' VI row, release µs or None)
    stock_rows: list[str]

    @property
    def first_us(self) -> int:
        return self.frames[0][0] if self.frames else 0

    def vi_status(self, as_of_us: int) -> list[dict]:
        """The FHPST01390000 rows as a poll at ``as_of_us`` would see them (newest first)."""
        rows: list[dict] = []
        for code in self.codes:
            mine = [(v, r) for c, v, r in self.vis if c == code and v["ts"] <= as_of_us]
            releases = {v["ts"]: r for v, r in mine if r is not None and r <= as_of_us}
            rows += _vi_status_output(code, self.names[code], self.day, [v for v, _ in mine], releases)
        return rows


def build_feed(
    dataset: Path,
    day: dt.date,
    stocks: list[str] | None = None,
    start: dt.time | None = None,
    end: dt.time | None = None,
    seed: int = 0,
) -> Feed:
    """The :class:`Feed` of ``stocks`` (default all) on ``day`` between exchange times ``start``
    and ``end``; ``seed`` draws the receive latency."""
    inst = pq.read_table(dataset / "instruments.parquet").to_pandas()
    inst = inst[inst["date"] == day].set_index("stock_code")
    part = dataset / "ticks" / f"date={day.isoformat()}"
    codes = stocks or sorted(p.stem for p in part.glob("*.parquet"))
    lo = krx.at_seoul(day, start or dt.time(0))
    hi = krx.at_seoul(day, end or dt.time(23, 59, 59))
    log = pq.read_table(dataset / "vi_log.parquet").to_pandas()
    merged: list[tuple[int, int, int, str, dict]] = []
    vis: list[tuple[str, dict, int | None]] = []
    for k, code in enumerate(codes):
        if code not in inst.index:
            raise ValueError(f"{dataset}: no stock {code} on {day}")
        ticks = pq.read_table(part / f"{code}.parquet")
        records, vi_rows = stock_records(ticks, code, int(inst.loc[code, "base_price"]), day)
        merged += [(ts, k, j, tr_id, rec) for j, (ts, tr_id, rec) in enumerate(records) if lo <= ts <= hi]
        mine = log[log["stock_code"] == code]
        releases = {
            krx.epoch_us(r.trigger_ts): krx.epoch_us(r.release_ts)
            for r in mine.itertuples()
            if pd.notna(r.release_ts) and krx.epoch_us(r.release_ts) <= hi
        }
        vis += [(code, v, releases.get(v["ts"])) for v in vi_rows if lo <= v["ts"] <= hi]
    merged.sort(key=lambda r: r[:3])
    stock_rows = [",".join(("stock_code", "stock_name", "market", *MEMBERSHIP))]
    for c in codes:
        flags = ("Y" if inst.loc[c, m] else "N" for m in MEMBERSHIP)
        stock_rows.append(",".join((c, inst.loc[c, "stock_name"], inst.loc[c, "market"], *flags)))
    names = {c: str(inst.loc[c, "stock_name"]) for c in codes}
    return Feed(day, codes, names, _frames(merged, codes, seed), vis, stock_rows)


def _frames(merged: list[tuple[int, int, int, str, dict]], codes: list[str], seed: int) -> list:
    """Records (ts, stock index, order, tr_id, record) as frames: those of one stock and tr_id at
    one instant batched (up to :data:`MAX_BATCH`), a PINGPONG every :data:`PING_EVERY_US`."""
    rng = np.random.default_rng(seed)
    latency = rng.integers(*krx.FEED_LATENCY_RANGE_US, size=len(merged))  # exchange -> recorder
    frames: list[tuple[int, str, str, str]] = []
    recv = 0
    last_ping = merged[0][0] if merged else 0
    i = 0
    while i < len(merged):
        ts, k, _, tr_id, rec = merged[i]
        batch = [rec]
        while (
            i + len(batch) < len(merged)
            and len(batch) < MAX_BATCH
            and merged[i + len(batch)][:2] == (ts, k)
            and merged[i + len(batch)][3] == tr_id
        ):
            batch.append(merged[i + len(batch)][4])
        recv = max(recv, ts + int(latency[i]))
        if recv - last_ping >= PING_EVERY_US:
            frames.append((recv, PINGPONG, "", kis.pingpong(krx.from_us(recv).strftime("%Y%m%d%H%M%S"))))
            last_ping = recv
        frames.append((recv, tr_id, codes[k], kis.format_frame(tr_id, batch)))
        i += len(batch)
    return frames


def vi_status_response(rows: list[dict]) -> dict:
    """The FHPST01390000 reply body around ``rows``, as the recording keeps it."""
    return {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", "output": rows}


def recording_line(recv_us: int, frame: str) -> str:
    """One line of a kis-log recording."""
    return json.dumps({"recv_ts": krx.from_us(recv_us).isoformat(timespec="microseconds"), "frame": frame})


def export_recording(
    dataset: Path,
    out: Path,
    day: dt.date,
    stocks: list[str] | None = None,
    start: dt.time | None = None,
    end: dt.time | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``out/kis-<day>.jsonl.gz``, ``out/vi_status-<day>.json`` and ``out/stocks.csv``."""
    feed = build_feed(dataset, day, stocks, start, end, seed)
    out.mkdir(parents=True, exist_ok=True)
    first = feed.first_us or krx.at_seoul(day, start or dt.time(0))
    lines = [
        recording_line(first - 1_000_000, kis.subscribe_ack(t, c)) for c in feed.codes for t in kis.FIELDS
    ]
    lines += [recording_line(recv, text) for recv, _, _, text in feed.frames]
    with gzip.open(out / f"kis-{day:%Y%m%d}.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
    rows = feed.vi_status(krx.at_seoul(day, end or dt.time(23, 59, 59)))
    (out / f"vi_status-{day:%Y%m%d}.json").write_text(
        json.dumps(vi_status_response(rows), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    (out / STOCKS_FILE).write_text("\n".join(feed.stock_rows) + "\n", encoding="utf-8")
    data_frames = sum(tr_id != PINGPONG for _, tr_id, _, _ in feed.frames)
    records = sum(n for n in (int(f[3][11:14]) for f in feed.frames if f[1] != PINGPONG))
    return {"lines": len(lines), "frames": data_frames, "records": records, "vi_status_rows": len(rows)}
