"""Vendor files in: a generated day exported as a DataGuide-style CP949 CSV comes back with the
same VI events; bad rows go to quarantine with a reason; broken files get a clear error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market.events.table import detect, events_table
from market.krx.dataset import IngestError
from market.vendor.ingest import Mapping, ingest, to_vendor_layout
from vicap.cli import app

MAPPING = Path(__file__).resolve().parents[2] / "market" / "vendor" / "mappings" / "dataguide_ticks.yaml"
KEYS = ["stock_code", "trigger_ts", "release_ts", "vi_type", "direction", "trigger_price", "auction_price"]


def export_dataguide(ticks: pd.DataFrame, inst: dict, path: Path, encoding: str = "cp949") -> None:
    """Write ticks the way a vendor would: Korean headers and labels, one row per event."""
    vendor = to_vendor_layout(ticks, Mapping.load(MAPPING), inst["base_price"], inst["kospi200"])
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


def test_round_trip_through_a_vendor_csv_keeps_every_vi(dataset, busiest, tmp_path):
    code, day, ticks, inst = busiest
    export_dataguide(ticks, inst, tmp_path / "틱데이터.csv")
    report = ingest([tmp_path / "틱데이터.csv"], Mapping.load(MAPPING), tmp_path / "out")
    assert (report.rows_in, report.rows_accepted, report.rows_quarantined) == (len(ticks), len(ticks), 0)
    original = events_table(detect(dataset)).to_pandas()
    original = original[(original.stock_code == code) & (original.trigger_ts.dt.date == day)]
    again = events_table(detect(tmp_path / "out")).to_pandas()
    assert len(original) >= 1
    pd.testing.assert_frame_equal(original[KEYS].reset_index(drop=True), again[KEYS].reset_index(drop=True))
    back = pq.read_table(tmp_path / "out" / "ticks" / f"date={day}" / f"{code}.parquet").to_pandas()
    assert back["price"].tolist() == ticks["price"].tolist() and back["cum_volume"].equals(
        ticks["cum_volume"]
    )


def test_bad_rows_are_quarantined_with_a_reason(busiest, tmp_path):
    _, _, ticks, inst = busiest
    export_dataguide(ticks.head(200), inst, tmp_path / "v.csv", encoding="utf-8")
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
    export_dataguide(ticks.head(3000), inst, tmp_path / "a.csv")
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
