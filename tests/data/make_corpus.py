"""Build the shipped test corpus under tests/data/ (outputs are committed; tests only read them).

    PYTHONPATH=. .venv/bin/python tests/data/make_corpus.py

- kis/recording/: a generated KRX morning (two stocks, one VI) recorded in the KIS formats;
- kis/corpus/: one line per KIS hazard (batched records, control messages, wrong field counts,
  an encrypted frame, garbage, unknown stocks) and a VI-status poll with a duplicate and a bad row;
- bad/: vendor files (the korean_headers test layout) each broken one way.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from market.kis import formats as kis
from market.vendor.ingest import Mapping, to_vendor_layout
from market.kis.export import export_recording
from market.synthetic.generator import generate

HERE = Path(__file__).resolve().parent
MAPPING = Mapping.load(HERE / "vendor" / "korean_headers.yaml")
DAY = dt.date(2024, 3, 4)
VI_STOCK, CALM_STOCK = "880770", "063380"


def kis_recording(raw: Path) -> None:
    out = HERE / "kis" / "recording"
    shutil.rmtree(out, ignore_errors=True)
    export_recording(raw, out, DAY, [VI_STOCK, CALM_STOCK], end=dt.time(9, 47), seed=1)


def _trade(code: str, hhmmss: str, price: int, volume: int, cum: int, base: int = 2950) -> dict:
    return {
        "MKSC_SHRN_ISCD": code,
        "STCK_CNTG_HOUR": hhmmss,
        "STCK_PRPR": price,
        "PRDY_VRSS": price - base,
        "CNTG_VOL": volume,
        "ACML_VOL": cum,
        "CCLD_DVSN": "1",
        "BSOP_DATE": DAY.strftime("%Y%m%d"),
    }


def kis_corpus() -> None:
    out = HERE / "kis" / "corpus"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    code = CALM_STOCK
    book = {"MKSC_SHRN_ISCD": code, "BSOP_HOUR": "090001", "HOUR_CLS_CODE": "0"}
    for i in range(1, 11):
        book |= {f"ASKP{i}": 2950 + 5 * i, f"BIDP{i}": 2955 - 5 * i, f"ASKP_RSQN{i}": 100, f"BIDP_RSQN{i}": 100}
    book |= {"ANTC_CNPR": 0, "ANTC_CNQN": 0, "ANTC_CNTG_VRSS": 0}
    good_trade = kis.format_frame(kis.TRADES, [_trade(code, "090001", 2955, 10, 10)])
    lines = [
        ("08:50:00", kis.subscribe_ack(kis.TRADES, code)),
        ("08:50:00", kis.subscribe_ack(kis.BOOK, code)),
        ("09:00:01.010", kis.format_frame(kis.BOOK, [book])),
        ("09:00:01.020", good_trade),
        (  # batched: three trades in one frame
            "09:00:02.010",
            kis.format_frame(
                kis.TRADES,
                [_trade(code, "090002", 2955, 5, 15), _trade(code, "090002", 2960, 5, 20), _trade(code, "090002", 2960, 1, 21)],
            ),
        ),
        ("09:00:02.020", kis.format_frame(kis.PROGRAM, [{"MKSC_SHRN_ISCD": code, "STCK_CNTG_HOUR": "090002", "NTBY_CNQN": 5}])),
        ("09:00:03.000", kis.pingpong("20240304090003")),
        ("09:00:03.010", good_trade.replace("^", "^", 1).rsplit("^", 1)[0]),  # one field short
        ("09:00:03.020", good_trade.replace("|001|", "|002|")),  # says two records, carries one
        ("09:00:03.030", "1|H0STCNT0|001|" + "x" * 64),  # AES-encrypted order notice
        ("09:00:03.040", "0|H0STXXX0|001|a^b"),  # unknown tr_id
        (
            "09:00:04.010",  # a batch with one record of a stock nobody subscribed
            kis.format_frame(kis.TRADES, [_trade(code, "090004", 2960, 2, 23), _trade("999999", "090004", 1000, 2, 2)]),
        ),
        ("09:00:04.020", kis.format_frame(kis.TRADES, [_trade(code, "090004", 2960, 2, 25) | {"STCK_PRPR": "abc"}])),
        ("09:00:05.010", kis.format_frame(kis.MARKET_OP, [{"MKSC_SHRN_ISCD": code, "VI_CLS_CODE": "N"}])),
    ]
    text = [json.dumps({"recv_ts": f"{DAY}T{t}+09:00", "frame": f}) for t, f in lines]
    text.insert(8, "hello, not json")
    text.insert(9, json.dumps({"recv_ts": f"{DAY}T09:00:03.050+09:00"}))  # no frame
    text.insert(10, json.dumps({"recv_ts": f"{DAY}T09:00:03.060", "frame": good_trade}))  # no UTC offset
    (out / "frames.jsonl").write_text("\n".join(text) + "\n", encoding="utf-8")
    (out / "stocks.csv").write_text(f"stock_code,stock_name,market,kospi200\n{code},코퍼스,KOSDAQ,N\n", encoding="utf-8")
    row = {
        "mksc_shrn_iscd": code,
        "bsop_date": "20240304",
        "cntg_vi_hour": "093000",
        "vi_cncl_hour": "093212",
        "vi_kind_code": "1",
        "vi_prc": "3245",
        "vi_stnd_prc": "2950",
        "vi_dprt": "10.00",
        "vi_dmc_stnd_prc": "3230",
        "vi_dmc_dprt": "0.46",
        "vi_count": "1",
    }
    polls = {"rt_cd": "0", "output": [row, dict(row), row | {"vi_kind_code": "7", "cntg_vi_hour": "094000"}]}
    (out / "vi_status-polls.json").write_text(json.dumps(polls, ensure_ascii=False, indent=1), encoding="utf-8")


def bad_vendor_files(raw: Path) -> None:
    out = HERE / "bad"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    inst = pq.read_table(raw / "instruments.parquet").to_pandas()
    row = inst[(inst.stock_code == CALM_STOCK) & (inst.date == DAY)].iloc[0]
    pq.write_table(pa.Table.from_pandas(inst[inst.index == row.name], preserve_index=False), out / "instruments.parquet")
    ticks = pq.read_table(raw / "ticks" / f"date={DAY}" / f"{CALM_STOCK}.parquet").to_pandas()
    opened = ticks.index[ticks["session"] == "continuous"][0]
    ticks = ticks.loc[opened - 100 : opened + 299].reset_index(drop=True)
    vendor = to_vendor_layout(ticks, MAPPING, row.to_dict()).astype(str)
    trades = [i for i in vendor.index[(ticks["event_type"] == "trade") & (ticks["session"] == "continuous")]]
    books = [i for i in vendor.index[(ticks["event_type"] == "book") & (ticks["session"] == "continuous")]]

    def csv(name: str, df: pd.DataFrame, encoding: str = "utf-8") -> None:
        df.to_csv(out / name, index=False, encoding=encoding)

    csv("cp949.csv", vendor, "cp949")
    v = vendor.copy()
    v.loc[trades[1], "현재가"], v.loc[trades[2], "현재가"], v.loc[trades[3], "현재가"] = "", "NaN", "-2950"
    csv("nan_negative_prices.csv", v)
    v = vendor.copy()
    for i in trades[5:8]:
        v.loc[i, "현재가"] = str(int(v.loc[i, "현재가"]) + 1)
    csv("off_grid.csv", v)
    v = vendor.copy()
    for i in books[10:12]:
        v.loc[i, "매수호가1"] = v.loc[i, "매도호가1"]
    csv("crossed_book.csv", v)
    v = vendor.copy()
    v.loc[books[20], "시간"] = v.loc[books[0], "시간"]  # a row stamped a little earlier than its place
    csv("out_of_order.csv", v)
    v = pd.concat([vendor, vendor.loc[[trades[10], trades[20]]]]).sort_index(kind="stable")
    csv("duplicated.csv", v)
    v = vendor.copy()
    v.loc[trades[1], "종목코드"], v.loc[trades[2], "종목코드"], v.loc[trades[3], "종목코드"] = "ABC123", "1234567", "999999"
    csv("unknown_codes.csv", v)
    v = vendor.copy()
    v["현재가"] = pd.to_numeric(v["현재가"]).astype(float)
    v.loc[trades[1], "현재가"] = float("nan")
    v.loc[trades[2], "현재가"] = 2955.5
    v.loc[trades[3], "체결량"] = "many"
    pq.write_table(pa.Table.from_pandas(v, preserve_index=False), out / "wrong_types.parquet")
    pq.write_table(pa.Table.from_pandas(vendor, preserve_index=False), out / "truncated.parquet")
    data = (out / "truncated.parquet").read_bytes()
    (out / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (out / "empty.csv").write_bytes(b"")
    csv("header_only.csv", vendor.head(0))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate(raw, stocks=3, days=1, seed=5, start=DAY, intensity="hot", jobs=2)
        kis_recording(raw)
        kis_corpus()
        bad_vendor_files(raw)


if __name__ == "__main__":
    main()
