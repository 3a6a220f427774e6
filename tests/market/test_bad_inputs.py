"""The shipped corpus of bad vendor files (tests/data/bad/, built by tests/data/make_corpus.py):
each gets a clear error or quarantine entries with a reason, never a traceback, never a silent
drop; counts always add up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market.krx.dataset import accepted_partitions, connect, ticks_source
from vicap.cli import app

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
MAPPING = Path(__file__).resolve().parents[1] / "data" / "vendor" / "korean_headers.yaml"

# file -> (rows in, {ingest reason: rows}, {validation reason: rows}). The trade after a row the
# ingest quarantined shows a jump in cum_volume, and a row out of time order is out of sequence:
# validation reports both and keeps the rows; a repeated trade is quarantined as a duplicate
CASES = {
    "cp949.csv": (400, {}, {}),
    "nan_negative_prices.csv": (400, {"price: not an integer in '현재가'": 2, "price: negative": 1}, {}),
    "wrong_types.parquet": (
        400,
        {"price: not an integer in '현재가'": 2, "volume: not an integer in '체결량'": 1},
        {},
    ),
    "off_grid.csv": (400, {}, {"expect_krx_price_on_tick_grid": 3}),
    "crossed_book.csv": (400, {}, {"expect_krx_bid_below_ask_in_continuous": 2}),
    "out_of_order.csv": (400, {}, {}),
    "duplicated.csv": (402, {}, {"exact duplicate of an earlier trade": 2}),
    "unknown_codes.csv": (
        400,
        {"stock_code: not a 6-digit code": 2, "stock_code: not in the instruments file": 1},
        {},
    ),
}


def _ingest(path: Path, out: Path) -> tuple[int, str]:
    fmt = path.suffix.lstrip(".")
    args = ["ingest", str(path), "--format", fmt, "--mapping", str(MAPPING), "--out", str(out)]
    args += ["--instruments", str(BAD / "instruments.parquet")]
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _quarantined(out: Path, sub: str) -> list[str]:
    files = sorted((out / "quarantine" / sub).rglob("*.parquet"))
    return [r for f in files for r in pq.read_table(f, columns=["reason"])["reason"].to_pylist()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_bad_file_is_quarantined_with_its_reason(name, tmp_path, data_dir):
    rows_in, at_ingest, at_validation = CASES[name]
    code, output = _ingest(BAD / name, tmp_path / "out")
    assert code == 0, output
    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert summary["rows_in"] == rows_in == summary["rows_accepted"] + summary["rows_quarantined"]
    assert summary["reasons"] == at_ingest
    reasons = _quarantined(tmp_path / "out", "ticks")
    assert {r: reasons.count(r) for r in set(reasons)} == at_validation
    written = sum(pq.read_metadata(f).num_rows for f in (tmp_path / "out" / "ticks").rglob("*.parquet"))
    assert written == summary["rows_accepted"]  # validation rewrites nothing
    kept = connect().execute(f"SELECT count(*) FROM {ticks_source(tmp_path / 'out')}").fetchone()[0]
    assert kept + len(reasons) + summary["rows_quarantined"] == rows_in  # nothing lost
    said = " ".join(output.split())
    assert ("1 row(s) out of time order (kept)" in said) == (name == "out_of_order.csv")
    gapped = name in ("nan_negative_prices.csv", "wrong_types.parquet", "unknown_codes.csv")
    assert ("Gaps in cum_volume (dropped trades)" in said) == gapped


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.parquet", "truncated.parquet: unreadable Parquet"),
        ("empty.csv", "empty.csv: empty file"),
        ("header_only.csv", "header_only.csv: no rows"),
    ],
)
def test_unreadable_files_get_a_clear_error(name, message, tmp_path, data_dir):
    code, output = _ingest(BAD / name, tmp_path / "out")
    assert code == 2 and message in output.replace("\n", "")


def test_a_truncated_partition_in_a_dataset_is_set_aside(tmp_path, data_dir):
    code, _ = _ingest(BAD / "cp949.csv", tmp_path / "ds")
    assert code == 0
    part = next((tmp_path / "ds" / "ticks").rglob("*.parquet"))
    shutil.copy(BAD / "truncated.parquet", part.parent / "999998.parquet")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "ds")])
    assert result.exit_code == 1 and "unreadable Parquet" in result.output
    # left where it was, as it was, and out of what later stages read
    assert (part.parent / "999998.parquet").read_bytes() == (BAD / "truncated.parquet").read_bytes()
    assert accepted_partitions(tmp_path / "ds") == [part]
