"""Great Expectations over tick partitions: clean data passes; each kind of bad row goes to
quarantine with its expectation as the reason; counts add up; a broken schema is critical."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from validation.expectations import bid_below_ask_in_continuous, session_matches_clock
from validation.runner import validate_dataset
from vicap.cli import app


@pytest.fixture
def small(dataset, tmp_path):
    """Two partition files of the session dataset, with its instruments and VI log."""
    root = tmp_path / "raw"
    files = sorted(dataset.glob("ticks/*/*.parquet"))[:2]
    for f in files:
        target = root / f.relative_to(dataset)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, target)
    shutil.copy(dataset / "instruments.parquet", root)
    shutil.copy(dataset / "vi_log.parquet", root)
    return root, [root / f.relative_to(dataset) for f in files]


def corrupt(path):
    """Break one row per rule; return {row index: expected reason fragment}."""
    t = pq.read_table(path).to_pandas()
    trades = t.index[(t.event_type == "trade") & (t.session == "continuous") & (t.side != 0)]
    books = t.index[
        (t.event_type == "book")
        & (t.session == "continuous")
        & (t.vi_status == 0)
        & (t.bid_price_1 > 0)
        & (t.ask_price_1 > 0)
        & (t.bid_price_2 > 0)
    ]
    want = {}
    i = trades[10]
    t.loc[i, "price"] = t.loc[i, "price"] + 1 if t.loc[i, "price"] >= 2000 else -5
    want[i] = "price_on_tick_grid"
    i = books[20]
    t.loc[i, "bid_price_1"] = t.loc[i, "ask_price_1"] + 100_000
    want[i] = "bid_below_ask_in_continuous"
    i = trades[30]
    t.loc[i, "vi_status"] = 1
    want[i] = "no_trade_in_vi_auction"
    t.loc[trades[40] :, "cum_volume"] += 7  # 7 shares dropped before this trade: a gap, not a fault
    i = books[50]
    t.loc[i, "ask_volume_3"] = -1
    want[i] = "book_volumes_non_negative"
    table = pa.Table.from_pandas(t, schema=pq.read_schema(path), preserve_index=False)
    pq.write_table(table, path)
    return want


def test_clean_partitions_pass_and_build_data_docs(small, tmp_path):
    root, files = small
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    report = validate_dataset(root, tmp_path / "reports", root / "quarantine")
    assert report.ok and report.rows_in == report.rows_kept == rows and report.rows_quarantined == 0
    assert report.docs.exists() and "ticks" in report.docs.read_text()
    # each partition's result is named by its date and stock, not GX's __none__ run
    names = {f"{f.parent.name.removeprefix('date=')}_{f.stem}" for f in files}
    runs = {p.name for p in (tmp_path / "reports" / "gx" / "uncommitted" / "validations" / "ticks").iterdir()}
    assert runs == names and all(n in report.docs.read_text() for n in names)


def test_bad_rows_go_to_quarantine_with_their_reason(small, tmp_path):
    root, files = small
    want = corrupt(files[0])
    before = pq.read_metadata(files[0]).num_rows
    report = validate_dataset(root, tmp_path / "reports", root / "quarantine")
    q = pq.read_table(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name)
    assert report.rows_in == report.rows_kept + report.rows_quarantined
    assert pq.read_metadata(files[0]).num_rows + q.num_rows == before  # nothing lost
    reasons = q.column("reason").to_pylist()
    for fragment in want.values():
        assert any(fragment in r for r in reasons), (fragment, reasons)
    assert q.num_rows == len(want) and not report.critical
    kept = pq.read_table(files[0])
    assert pc.min(kept["ask_volume_3"]).as_py() >= 0
    # the trade after the 7 missing shares is kept, and the gap reported with its size
    assert [g["missing_shares"] for g in report.gaps] == [7] and report.gapped == [
        f"{files[0].parent.name}/{files[0].name}"
    ]


def test_a_broken_schema_is_critical_and_the_partition_is_kept_in_quarantine(small, tmp_path):
    root, files = small
    rows = pq.read_metadata(files[1]).num_rows
    pq.write_table(pq.read_table(files[1]).drop_columns(["session"]), files[1])
    report = validate_dataset(root, tmp_path / "reports", root / "quarantine")
    assert not report.ok and any(
        "missing column 'session'" in c and files[1].name in c for c in report.critical
    )
    assert not files[1].exists()
    q = pq.read_table(root / "quarantine" / "ticks" / files[1].parent.name / files[1].name)
    assert q.num_rows == rows and report.rows_in == report.rows_kept + report.rows_quarantined


def test_validate_cli_prints_what_it_did_to_the_files(small, data_dir):
    """The printed counts are the rows on disk: in, kept in the partitions, moved to quarantine."""
    root, files = small
    want = corrupt(files[0])
    rows_in = sum(pq.read_metadata(f).num_rows for f in files)
    result = CliRunner().invoke(app, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    kept = sum(pq.read_metadata(f).num_rows for f in files)
    moved = pq.read_metadata(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).num_rows
    assert moved == len(want) and kept + moved == rows_in
    for label, value in (("rows in", rows_in), ("rows kept", kept), ("rows quarantined", moved)):
        assert f"│ {label} │ {value:,} │" in said, (label, said)
    assert "│ in = kept + quarantined │ True │" in said
    assert (data_dir / "reports" / "validation" / "gx").exists()


def test_session_labels_and_the_open_window_follow_the_days_schedule():
    """By the clock of each day, with the random ends real data has: an engine's rows before its
    random open say opening_auction, a clock-labelled source's say continuous and may cross."""
    rows = [  # (day, clock, label, crossed book, fits the clock)
        ("2024-03-05", "09:00:10", "opening_auction", True, True),
        ("2024-03-05", "09:00:10", "continuous", True, True),  # not judged: the call may still run
        ("2024-03-05", "09:00:45", "opening_auction", False, False),
        ("2024-03-05", "15:30:21", "closing_auction", False, True),
        ("2024-03-05", "15:45:00", "post_close", False, True),
        ("2024-03-05", "15:45:00", "closing_auction", False, False),
        ("2024-03-05", "16:10:00", "off_hours", False, True),
        ("2024-11-14", "09:45:00", "opening_auction", True, True),  # CSAT: the call runs to 10:00
        ("2024-11-14", "09:45:00", "continuous", False, False),
    ]
    df = pd.DataFrame(
        {
            "stock_code": [d for d, *_ in rows],  # one stock-day each: none has printed yet
            "event_type": "book",
            "timestamp": pd.to_datetime([f"{d} {c}" for d, c, *_ in rows]).tz_localize("Asia/Seoul"),
            "session": [r[2] for r in rows],
            "vi_status": 0,
            "bid_price_1": [10_100 if r[3] else 9_990 for r in rows],
            "ask_price_1": 10_000,
        }
    )
    assert session_matches_clock(df).tolist() == [r[4] for r in rows]
    late = df.iloc[[2]].assign(session="continuous", bid_price_1=10_100)  # 09:00:45: the call is over
    opened = df.iloc[[1, 1]].assign(event_type=["trade", "book"])  # the open printed at 09:00:10
    crossed = pd.concat([df, late, opened], ignore_index=True)
    assert bid_below_ask_in_continuous(crossed).tolist() == [True] * len(rows) + [False, False, False]


def test_a_dropped_trade_is_a_gap_reported_and_no_good_row_is_lost_however_often_it_runs(small, data_dir):
    """One trade dropped from a partition: `vicap validate` three times leaves the raw file as it
    was, keeps every row each time and reports the gap with its size each time."""
    import hashlib

    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    trades = t.index[(t.event_type == "trade") & (t.session == "continuous")]
    dropped = t.loc[trades[25]]
    t = t.drop(index=trades[25])
    pq.write_table(pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False), files[0])
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    seen = []
    for _ in range(3):
        result = CliRunner().invoke(app, ["validate", str(root)])
        assert result.exit_code == 0, result.output
        assert hashlib.sha256(files[0].read_bytes()).hexdigest() == digest
        said = " ".join(result.output.split())
        assert "Gaps in cum_volume (dropped trades): 1 partition(s)" in said
        assert f"{dropped['volume']:,} │" in said and "│ rows quarantined │ 0 │" in said
        seen.append(said.split("Validation of", 1)[1].split("Data Docs")[0])  # not the elapsed time
    assert seen[0] == seen[1] == seen[2]
    report = validate_dataset(root, data_dir / "reports", root / "quarantine")
    assert [(g["timestamp"], g["missing_shares"]) for g in report.gaps] == [
        (t.loc[trades[26], "timestamp"], dropped["volume"])
    ]


def test_an_exact_duplicate_trade_is_quarantined_once_and_its_copy_kept(small, tmp_path):
    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    row = t.index[(t.event_type == "trade") & (t.session == "continuous")][5]
    t = pd.concat([t.loc[:row], t.loc[[row]], t.loc[row + 1 :]], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False), files[0])
    report = validate_dataset(root, tmp_path / "reports", root / "quarantine")
    q = pq.read_table(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).to_pandas()
    assert q["reason"].tolist() == ["exact duplicate of an earlier trade"] and report.rows_quarantined == 1
    assert report.gaps == []  # the resend is out: cum_volume runs on
    assert pq.read_metadata(files[0]).num_rows == len(t) - 1
