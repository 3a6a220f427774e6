"""Vendor files in the layouts Korean traders have (tests/data/vendor/, written from each vendor's
published field list): Kiwoom real-time FID dumps, LS xingAPI, CREON StockCur, Tick Data's KOREA
trade and quote files, and vicap's own tick schema without a mapping."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from market.events.table import agreement, log_tolerance_s
from market.krx.schema import INSTRUMENT_SCHEMA, SIDE_UNKNOWN
from market.vendor.ingest import Mapping, convert, ingest
from market.vendor.mapping import DateSpec
from vicap.cli import app

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "vendor"
MAPPINGS = ROOT / "market" / "vendor" / "mappings"
DAY = "date=2024-03-04"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


def _ingest(layout: str, out: Path, instruments: Path | None = None) -> dict:
    code, text = _run(
        "ingest",
        str(DATA / layout),
        "--format",
        "csv",
        "--mapping",
        str(MAPPINGS / layout),
        "--instruments",
        str(instruments or DATA / layout / "stocks.csv"),
        "--out",
        str(out),
    )
    assert code == 0, text
    return json.loads((out / "ingest_summary.json").read_text())


def _ticks(out: Path) -> pd.DataFrame:
    return pq.read_table(out / "ticks" / DAY / "035720.parquet").to_pandas()


def _vi_log(out: Path) -> list[tuple]:
    return [
        (
            v["stock_code"],
            v["trigger_ts"].time(),
            v["release_ts"].time(),
            v["vi_type"],
            v["direction"],
            v["ref_price"],
            v["trigger_price"],
        )
        for v in pq.read_table(out / "vi_log.parquet").to_pylist()
    ]


VI = ("035720", dt.time(9, 17, 23), dt.time(9, 19, 41), "static", 1, 50_100, 55_200)


def test_a_kiwoom_fid_dump_comes_in_whole_signs_stripped_and_its_vi_log_joined(tmp_path):
    s = _ingest("kiwoom", tmp_path / "out")
    assert (s["rows_in"], s["rows_accepted"], s["rows_quarantined"]) == (61 + 23 + 2, 85, 1)
    assert s["reasons"] == {"price: not an integer in '10'": 1}  # the corrupted +5O300
    ticks = _ticks(tmp_path / "out")
    trades = ticks[ticks.event_type == "trade"]
    assert trades["price"].iloc[0] == 50_100 and (trades["price"] > 0).all()  # "+50100": a direction
    assert trades["side"].iloc[1:4].tolist() == [1, 1, -1]  # the sign of FID 15
    assert trades["volume"].iloc[1] == 67 and trades["cum_volume"].iloc[1] == 1_267
    assert (
        ticks[ticks.event_type == "book"]["ask_price_1"] > ticks[ticks.event_type == "book"]["bid_price_1"]
    ).all()
    assert ticks["timestamp"].is_monotonic_increasing  # trade and book files merged by time
    inst = pq.read_table(tmp_path / "out" / "instruments.parquet").to_pylist()
    assert [(i["stock_name"], i["market"], i["base_price"], i["kospi200"]) for i in inst] == [
        ("카카오", "KOSPI", 50_000, True)
    ]
    assert _vi_log(tmp_path / "out") == [VI]
    _found_by_the_rules(tmp_path)


def _found_by_the_rules(tmp_path: Path) -> None:
    """`vicap events` finds the logged VI by the KRX rules alone, from signed prints: the uncross
    carries an aggressor sign in these feeds, but continuous trading cannot print across a band."""
    code, text = _run("events", str(tmp_path / "out"), "--out", str(tmp_path / "events"))
    assert code == 0 and "detecting VIs by the KRX rules alone" in text, text
    events = pq.read_table(tmp_path / "events" / "events.parquet")
    # the rules place a VI within its auction's first half minute (the halt before the uncross)
    tolerance = log_tolerance_s(tmp_path / "out", use_flags=False)
    agree = agreement(events, pq.read_table(tmp_path / "out" / "vi_log.parquet"), tolerance_s=tolerance)
    assert agree.precision == agree.recall == 1.0 and tolerance == 30.0
    assert [(e["vi_type"], e["direction"], e["auction_price"]) for e in events.to_pylist()] == [
        ("static", 1, 55_300)
    ]


def test_ls_xing_trades_that_start_mid_session_with_unsigned_changes(tmp_path):
    s = _ingest("ls_xing", tmp_path / "out")
    assert s["rows_quarantined"] == 0 and s["vi_log_rows"] == 1
    assert s["reasons"] == {"VI release with no VI open (not in the log)": 1}
    ticks = _ticks(tmp_path / "out")
    first = ticks[ticks.event_type == "trade"].iloc[0]
    assert (first["price"], first["volume"], first["cum_volume"]) == (50_600, 215, 1_905)  # mid-session
    assert pq.read_table(tmp_path / "out" / "instruments.parquet")["base_price"].to_pylist() == [50_000]
    assert _vi_log(tmp_path / "out") == [VI]
    assert not (tmp_path / "out" / "quarantine" / "ticks").exists()  # the mid-session start passes validation
    _found_by_the_rules(tmp_path)


def test_creon_stockcur_tells_expected_prices_from_prints_and_the_uncross_that_ends_a_call(tmp_path):
    s = _ingest("creon", tmp_path / "out")
    assert (s["rows_in"], s["rows_quarantined"]) == (2 + 60 + 3, 0)
    ticks = _ticks(tmp_path / "out")
    assert ticks["stock_code"].unique().tolist() == ["035720"]  # "A035720"
    assert ticks["event_type"].tolist()[:3] == ["indicative", "indicative", "trade"]
    opening = ticks.iloc[2]
    assert (opening["price"], opening["side"], opening["cum_volume"]) == (50_100, 0, 1_200)
    uncross = ticks[(ticks.event_type == "trade") & (ticks.price == 55_300)].iloc[0]
    assert uncross["side"] == 0 and ticks.loc[uncross.name - 1, "event_type"] == "indicative"
    assert (ticks[ticks.event_type == "trade"].side.iloc[3:6] != 0).all()
    assert pq.read_table(tmp_path / "out" / "instruments.parquet")["base_price"].to_pylist() == [50_000]


def test_tick_data_korea_files_without_header_side_or_code_columns(tmp_path):
    inst = tmp_path / "instruments.parquet"
    row = {"date": dt.date(2024, 3, 4), "stock_code": "035720", "stock_name": "카카오", "market": "KOSPI"}
    pq.write_table(
        pa.Table.from_pylist(
            [row | {"kospi200": True, "kosdaq150": False, "futures_underlying": False, "base_price": 50_000}],
            INSTRUMENT_SCHEMA,
        ),
        inst,
    )
    s = _ingest("tickdata_korea", tmp_path / "out", inst)
    assert (s["rows_in"], s["rows_accepted"], s["rows_quarantined"]) == (60 + 1 + 23, 83, 1)
    assert s["reasons"] == {"excluded by the vendor: exclude is 'X'": 1}
    q = pq.read_table(
        tmp_path / "out" / "quarantine" / "ingest" / "035720_20240304_trades.parquet"
    ).to_pylist()
    assert q[0]["price"] == "52000.0" and q[0]["sales_condition"] == "3"  # raw text kept
    ticks = _ticks(tmp_path / "out")
    trades = ticks[ticks.event_type == "trade"]
    assert (trades["side"] == SIDE_UNKNOWN).all() and trades["price"].iloc[0] == 50_100
    assert trades["timestamp"].iloc[1] == pd.Timestamp("2024-03-04 09:00:27.137", tz="Asia/Seoul")
    book = ticks[ticks.event_type == "book"].iloc[0]
    best = (book["bid_price_1"], book["ask_price_1"], book["bid_volume_1"], book["ask_volume_1"])
    assert best == (50_500, 50_600, 280, 300)  # 09:01:30.250, after the print at 50,500


def test_a_file_no_mapping_of_the_layout_reads_is_named(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "kiwoom_0A_20240304.csv").write_text("종목코드,10\n035720,+50100\n", encoding="utf-8")
    code, text = _run(
        "ingest",
        str(tmp_path / "src"),
        "--format",
        "csv",
        "--mapping",
        str(MAPPINGS / "kiwoom"),
        "--out",
        str(tmp_path / "o"),
    )
    assert (
        code == 2
        and "no mapping of the layout reads this file (kiwoom_0D: *0D*" in text
        and "kiwoom_0A" in text
    )


def _two_stock_days(dataset: Path, out: Path) -> Path:
    """The session dataset's first day for two of its stocks, copied under ``out``: the one with the
    most VIs that day and the busiest of the other market. Two whole stock-days hold every kind of
    row (the calls, VI auctions and their uncross, books, statuses) at a fifth of the day's rows:
    the vendor reader converts every field of every row as text, about 10 s per 100,000 rows."""
    part = sorted((dataset / "ticks").iterdir())[0]
    day = dt.date.fromisoformat(part.name.removeprefix("date="))
    inst = pq.read_table(dataset / "instruments.parquet").to_pandas()
    inst = inst[inst["date"] == day].set_index("stock_code")
    log = pq.read_table(dataset / "vi_log.parquet").to_pandas()
    most_vis = log[log["trigger_ts"].dt.date == day]["stock_code"].value_counts().idxmax()
    rows = {p.stem: pq.read_metadata(p).num_rows for p in part.glob("*.parquet")}
    other = max(
        (c for c in rows if inst.loc[c, "market"] != inst.loc[most_vis, "market"]), key=rows.__getitem__
    )
    (out / part.name).mkdir(parents=True)
    for code in (most_vis, other):
        shutil.copy(part / f"{code}.parquet", out / part.name / f"{code}.parquet")
    return out / part.name


def test_vicaps_own_tick_schema_reads_without_a_mapping_with_the_same_quarantine(dataset, tmp_path):
    part = _two_stock_days(dataset, tmp_path / "in")
    inst = dataset / "instruments.parquet"
    code, text = _run(
        "ingest", str(part), "--format", "parquet", "--instruments", str(inst), "--out", str(tmp_path / "out")
    )
    assert code == 0, text
    for source in sorted(part.glob("*.parquet")):
        again = pq.read_table(tmp_path / "out" / "ticks" / part.name / source.name)
        assert again.equals(pq.read_table(source).select(again.column_names))
    frame = pq.read_table(sorted(part.glob("*.parquet"))[0]).to_pandas().head(50)
    frame.loc[3, "price"] = -5
    frame.to_csv(tmp_path / "own.csv", index=False)
    raw = pd.read_csv(tmp_path / "own.csv", dtype=str, keep_default_na=False)
    good, bad = convert(raw, Mapping.own_schema(), tmp_path / "own.csv")
    assert len(good) + len(bad) == 50 and bad["reason"].tolist() == ["price: negative"]
    assert good["timestamp"].iloc[0] == frame["timestamp"].iloc[0]


def test_units_and_codes_in_the_mapping_language(tmp_path):
    """A layout quoting prices in 천원 on KOSDAQ and won on KOSPI, codes with a prefix."""
    mapping = Mapping.model_validate(
        {
            "name": "units",
            "timestamp": {
                "columns": ["t"],
                "format": "%H%M%S",
                "date": {"filename": r"_(\d{8})", "format": "%Y%m%d"},
            },
            "columns": {
                "stock_code": {"source": "code", "extract": r"^A(\d{6})$"},
                "market": "m",
                "price": {"source": "p", "scale": {"KOSPI": 1, "KOSDAQ": 1000}},
                "volume": "v",
            },
        }
    )
    raw = pd.DataFrame(
        {
            "t": ["090001", "090002", "090003"],
            "code": ["A035720", "A263750", "263750"],
            "m": ["KOSPI", "KOSDAQ", "KOSDAQ"],
            "p": ["50100", "61.5", "61.5"],
            "v": ["1", "2", "3"],
        }
    )
    good, bad = convert(raw, mapping, tmp_path / "prices_20240304.csv")
    assert good["price"].tolist() == [50_100, 61_500] and good["stock_code"].tolist() == ["035720", "263750"]
    assert bad["reason"].tolist() == ["stock_code: 'code' does not match '^A(\\\\d{6})$'"]
    assert good["timestamp"].iloc[0] == pd.Timestamp("2024-03-04 09:00:01", tz="Asia/Seoul")
    # the date from a column instead (a Kiwoom dump with an 일자 column)
    by_column = mapping.model_copy(
        update={"timestamp": mapping.timestamp.model_copy(update={"date": DateSpec(column="일자")})}
    )
    good, _ = convert(raw.assign(일자=["20240305", "20240305", "x"]), by_column, tmp_path / "prices.csv")
    assert good["timestamp"].tolist() == [
        pd.Timestamp(f"2024-03-05 09:00:0{i}", tz="Asia/Seoul") for i in (1, 2)
    ]


def test_investor_nets_are_kept_only_as_of_their_publication_times(tmp_path):
    """A vendor file whose foreign net moves at 09:45 (between the 09:30 and 10:00 publications):
    the move is reported and rows before 10:00 keep the 09:30 value."""
    mapping = Mapping.model_validate(
        {
            "name": "flows",
            "timestamp": {"columns": ["ts"], "format": "%Y-%m-%d %H:%M:%S"},
            "columns": {
                "stock_code": "code",
                "stock_name": "name",
                "market": "market",
                "price": "price",
                "volume": "volume",
                "foreign_net": "foreign",
            },
            "base_price": "base",
        }
    )
    times = ["09:29:00", "09:30:20", "09:45:00", "09:59:59", "10:00:03", "10:30:00"]
    foreign = ["0", "100", "250", "250", "250", "300"]
    pd.DataFrame(
        {
            "ts": [f"2024-03-04 {t}" for t in times],
            "code": "035720",
            "name": "카카오",
            "market": "KOSPI",
            "price": "50100",
            "volume": "1",
            "foreign": foreign,
            "base": "50000",
        }
    ).to_csv(tmp_path / "flows.csv", index=False)
    report = ingest([tmp_path / "flows.csv"], mapping, tmp_path / "out")
    ticks = _ticks(tmp_path / "out")
    assert ticks["foreign_net"].tolist() == [0, 100, 100, 100, 250, 250]
    assert report.investor_changes_held["foreign_net"] == 2  # 09:45 and 10:30
