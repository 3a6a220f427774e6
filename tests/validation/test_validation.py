"""Great Expectations over tick partitions: clean data passes; each kind of bad row goes to
quarantine with its expectation as the reason while the raw file stays as it was; counts add up on
disk; later stages read the accepted rows; a broken or unreadable file is set aside whole."""

from __future__ import annotations

import hashlib
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from feature_repo.context import daily_bars
from market.events.table import detect
from market.krx.dataset import StaleVerdict, accepted_partitions, connect, read_accepted, ticks_source
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


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def accepted_rows(root) -> int:
    """The rows every later stage reads (the accepted view), counted by DuckDB."""
    return connect().execute(f"SELECT count(*) FROM {ticks_source(root)}").fetchone()[0]


def test_clean_partitions_pass_and_build_data_docs_and_the_report(small, tmp_path):
    root, files = small
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    report = validate_dataset(root, tmp_path / "reports")
    assert report.ok and report.rows_in == report.rows_accepted == rows and report.rows_quarantined == 0
    assert report.on_disk == {"rows_in": rows, "accepted": rows, "quarantined": 0}
    assert report.docs.exists() and "ticks" in report.docs.read_text()
    # each partition's result is named by its date and stock, not GX's __none__ run
    names = {f"{f.parent.name.removeprefix('date=')}_{f.stem}" for f in files}
    runs = {p.name for p in (tmp_path / "reports" / "gx" / "uncommitted" / "validations" / "ticks").iterdir()}
    assert runs == names and all(n in report.docs.read_text() for n in names)
    page = (tmp_path / "reports" / "index.html").read_text()
    assert report.html == tmp_path / "reports" / "index.html" and "<script" not in page
    assert f"{rows:,}" in page and "data:image/png;base64," in page and "every partition passed whole" in page


def test_bad_rows_go_to_quarantine_with_their_reason_and_the_raw_file_is_untouched(small, tmp_path):
    root, files = small
    want = corrupt(files[0])
    before, raw = pq.read_metadata(files[0]).num_rows, digest(files[0])
    report = validate_dataset(root, tmp_path / "reports")
    assert digest(files[0]) == raw  # validation only reads
    q = pq.read_table(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name)
    assert sorted(q.column("file_row_number").to_pylist()) == sorted(want)
    by_row = dict(zip(q.column("file_row_number").to_pylist(), q.column("reason").to_pylist(), strict=True))
    for row, fragment in want.items():
        assert fragment in by_row[row], (fragment, by_row[row])
    assert not report.critical and report.ok
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert report.on_disk == {"rows_in": rows, "accepted": rows - len(want), "quarantined": len(want)}
    assert accepted_rows(root) == rows - len(want)
    # the per-file reader (the VI detector's) gives the same rows, in file order
    kept = read_accepted(root, files[0])
    assert kept.num_rows == before - len(want) and pc.min(kept["ask_volume_3"]).as_py() >= 0
    # the trade after the 7 missing shares is kept, and the gap reported with its size
    assert [g["missing_shares"] for g in report.gaps] == [7] and report.gapped == [
        f"{files[0].parent.name}/{files[0].name}"
    ]
    page = report.html.read_text()
    assert "price_on_tick_grid" in page and files[0].parent.name in page and "shares missing" in page
    # the partition links to its own GX result page, which exists
    link = (
        f"gx/uncommitted/data_docs/local_site/validations/ticks/{files[0].parent.name[5:]}_{files[0].stem}/"
    )
    href = page.split(f"href='{link}", 1)[1].split("'", 1)[0]
    assert (tmp_path / "reports" / (link + href)).exists()


def test_null_keys_and_values_outside_their_sets_are_quarantined_rows_not_kept(small, tmp_path):
    """What used to fail the run while its rows stayed in the file: a row with a null key or a
    label outside its set is quarantined with the expectation that caught it."""
    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    books = t.index[(t.event_type == "book") & (t.session == "continuous")]
    t.loc[books[3], "session"] = "lunch_break"
    t.loc[books[4], "event_type"] = "quote"
    t = pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False)
    prices = t["price"].to_pylist()
    prices[books[5]] = None  # a null price: the schema allows none
    t = t.set_column(t.schema.get_field_index("price"), "price", pa.array(prices, pa.int64()))
    bids = t["bid_price_3"].to_pylist()
    bids[books[6]] = None  # and a null away from the keys
    t = t.set_column(t.schema.get_field_index("bid_price_3"), "bid_price_3", pa.array(bids, pa.int64()))
    pq.write_table(t, files[0])
    report = validate_dataset(root, tmp_path / "reports")
    q = pq.read_table(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).to_pandas()
    reasons = dict(zip(q["file_row_number"], q["reason"], strict=True))
    assert sorted(reasons) == [books[3], books[4], books[5], books[6]]
    assert "expect_krx_labels_in_their_sets" in reasons[books[3]]
    assert "expect_krx_labels_in_their_sets" in reasons[books[4]]
    assert "expect_column_values_to_not_be_null(price)" in reasons[books[5]]
    assert reasons[books[6]] == "missing bid_price_3 (the tick schema requires it)"
    assert report.ok and report.rows_quarantined == 4 and report.on_disk["quarantined"] == 4
    assert accepted_rows(root) == report.rows_in - 4


def test_a_broken_schema_is_critical_and_the_partition_is_set_aside_whole(small, tmp_path):
    root, files = small
    rows = pq.read_metadata(files[1]).num_rows
    pq.write_table(pq.read_table(files[1]).drop_columns(["session"]), files[1])
    raw = digest(files[1])
    report = validate_dataset(root, tmp_path / "reports")
    assert not report.ok and any(
        "missing column 'session'" in c and files[1].name in c for c in report.critical
    )
    assert digest(files[1]) == raw  # still there, as it was
    q = pq.read_table(root / "quarantine" / "ticks" / files[1].parent.name / files[1].name)
    assert q.num_rows == rows and report.on_disk["quarantined"] == rows
    assert accepted_partitions(root) == [files[0]]  # the view leaves it out
    assert accepted_rows(root) == pq.read_metadata(files[0]).num_rows == report.on_disk["accepted"]
    assert "schema_mismatch" in report.html.read_text()


def test_an_unreadable_partition_is_left_in_place_and_out_of_the_view(small, tmp_path):
    root, files = small
    files[1].write_bytes(files[1].read_bytes()[:5000])  # cut short
    raw = digest(files[1])
    report = validate_dataset(root, tmp_path / "reports")
    assert digest(files[1]) == raw and report.unreadable_files == 1 and not report.ok
    assert any("unreadable Parquet" in c and str(files[1]) in c for c in report.critical)
    assert accepted_partitions(root) == [files[0]] and accepted_rows(root) == report.rows_accepted


def test_validate_cli_prints_the_counts_found_on_disk(small, data_dir):
    root, files = small
    want = corrupt(files[0])
    rows_in = sum(pq.read_metadata(f).num_rows for f in files)
    result = CliRunner().invoke(app, ["validate", str(root), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    moved = pq.read_metadata(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).num_rows
    assert moved == len(want) and accepted_rows(root) + moved == rows_in
    for label, value in (
        ("rows in", rows_in),
        ("rows accepted", accepted_rows(root)),
        ("rows quarantined", moved),
    ):
        assert f"│ {label} │ {value:,} │" in said, (label, said)
    assert "│ in = accepted + quarantined │ True │" in said
    assert (data_dir / "reports" / "validation" / "index.html").exists()


def test_later_stages_read_the_accepted_view_and_refuse_a_stale_one(small, tmp_path):
    """A trade far outside the daily limits is quarantined: the daily bars (stock context) never
    see it. A partition rewritten after validation makes every reader refuse the old verdict."""
    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    row = t.index[(t.event_type == "trade") & (t.session == "continuous")][40]
    t.loc[row, "price"] = t.loc[row, "price"] * 3 // 100 * 100
    pq.write_table(pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False), files[0])
    validate_dataset(root, tmp_path / "reports")
    bars = daily_bars(root)
    assert bars.loc[bars.stock_code == files[0].stem, "high"].max() < t.loc[row, "price"]
    pq.write_table(pq.read_table(files[1]).slice(0, 1000), files[1])  # a producer rewrote it
    with pytest.raises(StaleVerdict, match=files[1].name):
        daily_bars(root)
    with pytest.raises(StaleVerdict, match="run `vicap validate`"):
        detect(root)


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
    was, keeps every row each time, reports the gap with its size each time and writes the same
    verdict byte for byte."""
    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    trades = t.index[(t.event_type == "trade") & (t.session == "continuous")]
    dropped = t.loc[trades[25]]
    t = t.drop(index=trades[25])
    pq.write_table(pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False), files[0])
    raw = hashlib.sha256(files[0].read_bytes()).hexdigest()
    verdicts = []
    for jobs in ("1", "2", "1"):  # in process and in two worker processes: the same verdict
        result = CliRunner().invoke(app, ["validate", str(root), "--jobs", jobs])
        assert result.exit_code == 0, result.output
        assert hashlib.sha256(files[0].read_bytes()).hexdigest() == raw
        verdicts.append((root / "validation_summary.json").read_bytes())
        said = " ".join(result.output.split())
        assert "Gaps in cum_volume (dropped trades): 1 partition(s)" in said
        assert f"{dropped['volume']:,} │" in said and "│ rows quarantined │ 0 │" in said
    assert verdicts[0] == verdicts[1] == verdicts[2]  # byte-identical
    assert not (root / "quarantine" / "ticks").exists() or not any(
        (root / "quarantine" / "ticks").rglob("*.parquet")
    )
    report = validate_dataset(root, data_dir / "reports")
    assert [(g["timestamp"], g["missing_shares"]) for g in report.gaps] == [
        (t.loc[trades[26], "timestamp"].isoformat(), dropped["volume"])
    ]
    assert accepted_rows(root) == len(t) + pq.read_metadata(files[1]).num_rows  # every row kept


def test_an_exact_duplicate_trade_is_quarantined_once_and_its_copy_kept(small, tmp_path):
    root, files = small
    t = pq.read_table(files[0]).to_pandas()
    row = t.index[(t.event_type == "trade") & (t.session == "continuous")][5]
    t = pd.concat([t.loc[:row], t.loc[[row]], t.loc[row + 1 :]], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(t, schema=pq.read_schema(files[0]), preserve_index=False), files[0])
    report = validate_dataset(root, tmp_path / "reports")
    q = pq.read_table(root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).to_pandas()
    assert q["reason"].tolist() == ["exact duplicate of an earlier trade"] and report.rows_quarantined == 1
    assert q["file_row_number"].tolist() == [row + 1]  # the copy; the first stays
    assert report.gaps == []  # the resend is out: cum_volume runs on
    assert read_accepted(root, files[0]).num_rows == len(t) - 1 == pq.read_metadata(files[0]).num_rows - 1


def test_ray_tasks_reach_the_same_verdict(small, tmp_path):
    """--ray-address: each partition a Ray task that opens the GX context itself (a private local
    instance here, as on a cluster's workers); the verdict is the in-process one, byte for byte."""
    root, files = small
    corrupt(files[0])
    validate_dataset(root, tmp_path / "reports", jobs=1)
    alone = (root / "validation_summary.json").read_bytes()
    quarantined = (root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).read_bytes()
    report = validate_dataset(root, tmp_path / "reports", jobs=2, ray_address="local")
    assert (root / "validation_summary.json").read_bytes() == alone and report.balanced
    assert (root / "quarantine" / "ticks" / files[0].parent.name / files[0].name).read_bytes() == quarantined
