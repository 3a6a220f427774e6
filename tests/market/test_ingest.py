"""Vendor files in: a generated day exported as a DataGuide-style CP949 CSV comes back with the
same VI events; bad rows go to quarantine with a reason; broken files get a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market.events.table import agreement, detect, events_table
from market.krx.dataset import IngestError
from market.krx.schema import SIDE_UNKNOWN, VI_LOG_SCHEMA
from market.vendor.ingest import Mapping, ingest, to_vendor_layout
from vicap.cli import app

MAPPING = Path(__file__).resolve().parents[1] / "data" / "vendor" / "korean_headers.yaml"
KEYS = ["stock_code", "trigger_ts", "release_ts", "vi_type", "direction", "trigger_price", "auction_price"]


def export_korean_headers(ticks: pd.DataFrame, inst: dict, path: Path, encoding: str = "cp949") -> None:
    """Write ticks the way a vendor would: Korean headers and labels, one row per event."""
    vendor = to_vendor_layout(ticks, Mapping.load(MAPPING), inst)
    vendor.to_csv(path, index=False, encoding=encoding)


@pytest.fixture(scope="module")
def busiest(dataset):
    """The stock-day with the most VIs in the session dataset."""
    log = pq.read_table(dataset / "vi_log.parquet").to_pandas()
    code, day = log.groupby([log.stock_code, log.trigger_ts.dt.date]).size().idxmax()
    ticks = pq.read_table(dataset / "ticks" / f"date={day}" / f"{code}.parquet").to_pandas()
    inst = pq.read_table(dataset / "instruments.parquet").to_pandas()
    row = inst[(inst.stock_code == code) & (inst.date == day)].iloc[0].to_dict()
    return code, day, ticks, row


@pytest.fixture(scope="module")
def round_trip(busiest, tmp_path_factory):
    """``busiest`` written as a vendor CSV and ingested back: (the ingest's report, its data root).
    Two tests read it (read-only): the CSV's conversion takes about 10 s each way."""
    _, _, ticks, inst = busiest
    root = tmp_path_factory.mktemp("vendor-round-trip")
    export_korean_headers(ticks, inst, root / "틱데이터.csv")
    return ingest([root / "틱데이터.csv"], Mapping.load(MAPPING), root / "out"), root / "out"


def test_round_trip_through_a_vendor_csv_keeps_every_vi(dataset_events, busiest, round_trip):
    code, day, ticks, _ = busiest
    report, out = round_trip
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (len(ticks), len(ticks), 0)
    original = dataset_events.to_pandas()
    original = original[(original.stock_code == code) & (original.trigger_ts.dt.date == day)]
    again = events_table(detect(out)).to_pandas()
    assert len(original) >= 1
    pd.testing.assert_frame_equal(original[KEYS].reset_index(drop=True), again[KEYS].reset_index(drop=True))
    back = pq.read_table(out / "ticks" / f"date={day}" / f"{code}.parquet").to_pandas()
    assert back["price"].tolist() == ticks["price"].tolist() and back["cum_volume"].equals(
        ticks["cum_volume"]
    )


def test_bad_rows_are_quarantined_with_a_reason(busiest, tmp_path):
    _, _, ticks, inst = busiest
    export_korean_headers(ticks.head(200), inst, tmp_path / "v.csv", encoding="utf-8")
    rows = pd.read_csv(tmp_path / "v.csv", dtype=str, keep_default_na=False)
    rows.loc[3, "시간"] = "99x"
    rows.loc[5, "현재가"] = "abc"
    rows.loc[7, "현재가"] = "-100"
    rows.loc[9, "종목코드"] = "A12"
    rows.loc[11, "매수매도구분"] = "몰라"
    rows.loc[13, "체결량"] = "1.5"
    rows.to_csv(tmp_path / "v.csv", index=False, encoding="utf-8")
    report = ingest([tmp_path / "v.csv"], Mapping.load(MAPPING), tmp_path / "out")
    assert report.rows_in == 200 == report.rows_accepted + report.rows_quarantined
    q = pq.read_table(tmp_path / "out" / "quarantine" / "ingest" / "v.parquet").to_pandas()
    assert len(q) == 6 == report.rows_quarantined
    reasons = " | ".join(q["reason"])
    for fragment in (
        "timestamp",
        "price: not an integer",
        "price: negative",
        "stock_code: not a 6-digit",
        "side: unknown value",
        "volume: not an integer",
    ):
        assert fragment in reasons
    assert q["시간"].tolist()[0] == "99x"  # the raw text is kept


def test_broken_files_get_a_clear_error(tmp_path):
    m = Mapping.load(MAPPING)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(IngestError, match=r"empty\.csv: empty file"):
        ingest([tmp_path / "empty.csv"], m, tmp_path / "out")
    (tmp_path / "cut.parquet").write_bytes(b"PAR1\x00\x01garbage")
    with pytest.raises(IngestError, match=r"cut\.parquet: unreadable Parquet"):
        ingest([tmp_path / "cut.parquet"], m, tmp_path / "out")
    (tmp_path / "few.csv").write_text("일자,시간,종목코드\n20240304,090000000000,005930\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"few.csv: column\(s\) \['종목명'"):
        ingest([tmp_path / "few.csv"], m, tmp_path / "out")
    (tmp_path / "bad.yaml").write_text("name: x\ncolumns: {}\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad\.yaml: not a valid column mapping"):
        Mapping.load(tmp_path / "bad.yaml")


def test_ingest_cli_validates_and_refuses_unknown_formats(busiest, tmp_path, data_dir):
    _, _, ticks, inst = busiest
    export_korean_headers(ticks.head(3000), inst, tmp_path / "a.csv")
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "a.csv"),
            "--format",
            "csv",
            "--mapping",
            str(MAPPING),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "in = accepted + quarantined" in ok.output and "Validation of" in ok.output
    bad = runner.invoke(app, ["ingest", str(tmp_path), "--format", "xls", "--out", str(tmp_path / "k")])
    assert bad.exit_code == 2 and "--format must be one of" in bad.output


def _logged_for(dataset: Path, code: str, day) -> pa.Table:
    log = pq.read_table(dataset / "vi_log.parquet")
    mine = [
        i
        for i, (c, t) in enumerate(
            zip(log["stock_code"].to_pylist(), log["trigger_ts"].to_pylist(), strict=True)
        )
        if c == code and t.date() == day
    ]
    return log.take(mine).select(VI_LOG_SCHEMA.names)


def test_rules_alone_find_exactly_the_logged_vis_in_a_vendor_csv_round_trip(
    dataset, busiest, round_trip, tmp_path
):
    code, day, _, _ = busiest
    shutil.copytree(round_trip[1], tmp_path / "out")
    logged = _logged_for(dataset, code, day)
    pq.write_table(logged, tmp_path / "out" / "vi_log.parquet")  # the exchange's record of that day
    result = CliRunner().invoke(
        app, ["events", str(tmp_path / "out"), "--out", str(tmp_path / "ev"), "--rules-only"]
    )
    assert result.exit_code == 0, result.output
    assert "KRX rules only" in result.output
    found = pq.read_table(tmp_path / "ev" / "events.parquet")
    a = agreement(found, logged, tolerance_s=30)
    assert logged.num_rows >= 3 and (a.precision, a.recall) == (1.0, 1.0)
    assert a.same_auction_price == a.matched == logged.num_rows


def test_a_file_without_sides_or_vi_flags_reads_sides_as_unknown_and_finds_no_false_vi(
    dataset, busiest, tmp_path
):
    """Like a level-1 trade-and-quote export: no aggressor side, no VI flags, no status or
    indicative rows. Its trades must not look like auction prints, and `vicap events` must say
    that the file has no flags rather than find nothing in silence."""
    code, day, ticks, inst = busiest
    plain = ticks[ticks["event_type"].isin(["trade", "book"])].reset_index(drop=True)
    full = Mapping.load(MAPPING)
    mapping = full.model_copy(
        update={
            "columns": {k: v for k, v in full.columns.items() if k not in ("side", "vi_status", "vi_type")},
            "values": {k: v for k, v in full.values.items() if k not in ("side", "vi_type")},
        }
    )
    export = to_vendor_layout(plain, mapping, inst)
    export.to_csv(tmp_path / "taq.csv", index=False, encoding="cp949")
    ingest([tmp_path / "taq.csv"], mapping, tmp_path / "out")
    back = pq.read_table(tmp_path / "out" / "ticks" / f"date={day}" / f"{code}.parquet", columns=["side"])
    assert set(back["side"].to_pylist()) == {SIDE_UNKNOWN}
    logged = _logged_for(dataset, code, day)
    pq.write_table(logged, tmp_path / "out" / "vi_log.parquet")
    result = CliRunner().invoke(app, ["events", str(tmp_path / "out"), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "carries no VI flags" in said and "KRX rules only" in said
    a = agreement(pq.read_table(tmp_path / "ev" / "events.parquet"), logged, tolerance_s=30)
    assert a.precision == 1.0 and a.same_auction_price == a.matched  # nothing false, prices exact
    assert a.recall >= 0.75  # halts that end in a print across a band (measured: see the README)


def test_membership_columns_and_the_day_schedule_reach_the_dataset(tmp_path):
    """A vendor file with KOSDAQ150 and futures columns, rows of a CSAT day and of the after-hours
    sessions: the instruments carry the membership, sessions follow each day's clock."""
    rows = [
        ("20241114", "094500000000", "0"),  # CSAT: the opening call until 10:00
        ("20241114", "100012500000", "10050"),
        ("20241114", "162500000000", "0"),  # CSAT: the closing call from 16:20
        ("20241115", "090003000000", "10100"),
        ("20241115", "154500000000", "10100"),  # post-close
        ("20241115", "161000300000", "10300"),  # off hours
    ]
    header = "일자,시간,종목코드,종목명,시장구분,구분,현재가,체결량,기준가,KOSDAQ150,주식선물"
    lines = [header] + [
        f"{d},{t},123450,비캡전자,코스닥,{'체결' if p != '0' else '예상체결'},{p},10,10000,Y,N"
        for d, t, p in rows
    ]
    (tmp_path / "ticks.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = Mapping.model_validate(
        {
            "name": "small",
            "timestamp": {"columns": ["일자", "시간"], "format": "%Y%m%d %H%M%S%f"},
            "base_price": "기준가",
            "kosdaq150": "KOSDAQ150",
            "futures_underlying": "주식선물",
            "columns": {
                "stock_code": "종목코드",
                "stock_name": "종목명",
                "market": "시장구분",
                "event_type": "구분",
                "price": "현재가",
                "volume": "체결량",
            },
            "values": {
                "market": {"코스닥": "KOSDAQ"},
                "event_type": {"체결": "trade", "예상체결": "indicative"},
            },
        }
    )
    ingest([tmp_path / "ticks.csv"], mapping, tmp_path / "out")
    inst = pq.read_table(tmp_path / "out" / "instruments.parquet").to_pylist()
    assert [(r["kospi200"], r["kosdaq150"], r["futures_underlying"]) for r in inst] == [
        (False, True, False)
    ] * 2
    sessions = [
        s
        for day in ("2024-11-14", "2024-11-15")
        for s in pq.read_table(tmp_path / "out" / "ticks" / f"date={day}" / "123450.parquet")[
            "session"
        ].to_pylist()
    ]
    assert sessions == [
        "opening_auction",
        "continuous",
        "closing_auction",
        "continuous",
        "post_close",
        "off_hours",
    ]
