"""KIS real-time recordings in: the frame format, the recording shipped under tests/data/ (made
from a generated market), a fresh recording of the session dataset, and the hazards corpus."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from market import krx
from market.events.table import agreement, detect, events_table
from market.exchange.engine import BUY, SELL, Exchange, Instrument
from market.kis import formats as kis
from market.kis.export import export_recording
from market.kis.ingest import ingest_kis, load_stocks
from market.krx.schema import INSTRUMENT_SCHEMA, RECV_TS_FIELD, SIDE_UNKNOWN
from vicap.cli import app

DATA = Path(__file__).resolve().parents[1] / "data" / "kis"
field_text = st.text(alphabet=st.characters(blacklist_characters="^|\n", codec="utf-8"), max_size=8)


@given(
    tr_id=st.sampled_from(sorted(kis.FIELDS)),
    values=st.lists(st.lists(field_text, min_size=59, max_size=59), min_size=1, max_size=12),
)
def test_frames_round_trip_whatever_the_batch(tr_id, values):
    names = kis.FIELDS[tr_id]
    records = [dict(zip(names, v, strict=False)) for v in values]
    parsed = kis.parse_frame(kis.format_frame(tr_id, records))
    assert isinstance(parsed, kis.Records) and parsed.tr_id == tr_id and parsed.records == records


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0|H0STCNT0|001|" + "^".join(["1"] * 30), "H0STCNT0 record of 30 fields lacks BSOP_DATE"),
        ("0|H0STCNT0|002|" + "^".join(["1"] * 93), "field count 93 does not split into 2 records"),
        ("1|H0STCNT0|001|c2VjcmV0", "encrypted frame"),
        ("0|H0STZZZ0|001|a", "unknown tr_id"),
        ("0|H0STCNT0|1|a", "record count '1'"),
        ("hello", "not a KIS frame"),
        ("{not json", "control message is not JSON"),
    ],
)
def test_bad_frames_name_their_fault(text, reason):
    with pytest.raises(kis.FrameError, match=reason):
        kis.parse_frame(text)


def test_control_messages_are_told_apart():
    assert kis.parse_frame(kis.pingpong("20240304090000")) == kis.Control(
        "PINGPONG", kis.pingpong("20240304090000")
    )
    assert kis.parse_frame(kis.subscribe_ack(kis.TRADES, "005930")).kind == "SUBSCRIBE SUCCESS"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_the_shipped_recording_ingests_and_its_vi_is_found(tmp_path, data_dir):
    """Acceptance: `vicap ingest <recording> --format kis-log` then `vicap events`."""
    code, out = _run("ingest", str(DATA / "recording"), "--format", "kis-log", "--out", str(tmp_path / "OUT"))
    assert code == 0, out
    summary = json.loads((tmp_path / "OUT" / "ingest_summary.json").read_text())
    assert summary["lines_quarantined"] == summary["records_quarantined"] == 0
    assert summary["lines"] == summary["data_frames"] + sum(summary["control_messages"].values())
    assert (
        summary["control_messages"]["SUBSCRIBE SUCCESS"] == 8 and summary["control_messages"]["PINGPONG"] > 10
    )
    ticks = pq.read_table(tmp_path / "OUT" / "ticks" / "date=2024-03-04" / "880770.parquet")
    assert ticks.schema.field("recv_ts") == RECV_TS_FIELD
    recv, exch = ticks["recv_ts"].cast("int64").to_pylist(), ticks["timestamp"].cast("int64").to_pylist()
    assert all(r >= e for r, e in zip(recv, exch, strict=True))  # received after the exchange second began
    assert all(t % 1_000_000 == 0 for t in exch)  # KIS stamps whole seconds
    code, out = _run("events", str(tmp_path / "OUT"), "--out", str(tmp_path / "EVENTS"))
    assert code == 0, out
    events = pq.read_table(tmp_path / "EVENTS" / "events.parquet").to_pylist()
    assert len(events) == 1 and events[0]["vi_type"] == "static" and events[0]["direction"] == 1
    assert "100.00%" in out and pq.read_table(tmp_path / "EVENTS" / "windows.parquet").num_rows > 150


@pytest.mark.parametrize("with_rest", [True, False], ids=["with VI-status REST", "websocket only"])
def test_a_recording_of_the_session_market_finds_the_same_vis(
    dataset, dataset_events, recorded, tmp_path, with_rest
):
    """Every VI of a recorded day comes back, to the second, with its type, direction and
    auction price; without the REST record the type is inferred from the auction. The recording
    and its ingest with the REST record are the session's (conftest.py: exported once)."""
    day, busiest = recorded.day, recorded.codes
    if with_rest:
        report, found = recorded.report, recorded.events
    else:
        shutil.copytree(recorded.rec, tmp_path / "rec", ignore=shutil.ignore_patterns("vi_status-*.json"))
        assert not list((tmp_path / "rec").glob("vi_status-*.json"))
        report = ingest_kis(tmp_path / "rec", tmp_path / "out")
        found = events_table(detect(tmp_path / "out"))
    assert report.balanced and report.records_quarantined == report.lines_quarantined == 0
    original = dataset_events.to_pandas()
    original = original[(original.trigger_ts.dt.date == day) & original.stock_code.isin(busiest)]
    again = found.to_pandas()
    assert len(original) >= 3 and len(again) == len(original)
    keys = ["stock_code", "direction", "auction_price", "auction_volume"]
    a, b = original.sort_values(["stock_code", "trigger_ts"]), again.sort_values(["stock_code", "trigger_ts"])
    pd.testing.assert_frame_equal(a[keys].reset_index(drop=True), b[keys].reset_index(drop=True))
    same_type = (a["vi_type"].to_numpy() == b["vi_type"].to_numpy()).mean()
    # the REST record names the type; inferred from whole-second data it is right most of the time
    assert same_type == 1.0 if with_rest else same_type >= 0.9
    gap = (
        (b.trigger_ts.to_numpy() - a.trigger_ts.dt.floor("s").to_numpy()).astype("timedelta64[s]").astype(int)
    )
    assert set(gap) <= {0, 1}  # whole seconds, the VI push stamped by its receive second
    log = pq.read_table(dataset / "vi_log.parquet").to_pandas()
    log_day = pa.Table.from_pandas(
        log[(log.trigger_ts.dt.date == day) & log.stock_code.isin(busiest)], preserve_index=False
    )
    agree = agreement(found, log_day, tolerance_s=1.0)
    assert agree.precision == agree.recall == 1.0


def test_the_hazard_corpus_is_counted_and_quarantined(tmp_path, data_dir):
    code, out = _run("ingest", str(DATA / "corpus"), "--format", "kis-log", "--out", str(tmp_path / "out"))
    assert code == 0, out
    s = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert (s["lines"], s["data_frames"], s["lines_quarantined"]) == (17, 8, 6)
    assert s["control_messages"] == {"SUBSCRIBE SUCCESS": 2, "PINGPONG": 1}
    assert (s["records"], s["records_accepted"], s["records_quarantined"]) == (11, 9, 2)
    assert (s["vi_status_records"], s["vi_status_accepted"], s["vi_status_quarantined"]) == (3, 1, 2)
    # line 8 lacks VI_STND_PRC, a trailing field vicap does not use: read, and its width reported
    assert s["drift"] == {"H0STCNT0 45 fields": 1}
    q = pq.read_table(tmp_path / "out" / "quarantine" / "ingest" / "kis.parquet").to_pandas()
    assert len(q) == 6 + 2 + 2
    for fragment in (
        "H0STCNT0 record of 23 fields lacks BSOP_DATE",  # line 12: 46 fields said to be 2 records
        "encrypted frame",
        "unknown tr_id 'H0STXXX0'",
        'not a JSON object {"recv_ts", "frame"}',
        "recv_ts has no UTC offset",
        "stock_code '999999' is not in stocks.csv",
        "STCK_PRPR: 'abc' is not an integer",
        "VI status: duplicate of an earlier poll",
        "vi_kind_code '7' is not a known kind",
    ):
        assert q["reason"].str.contains(fragment, regex=False).any(), fragment
    assert (q.loc[q.line == 9, "raw"] == "hello, not json").all()  # the raw text is kept
    assert "read with a drifted width: H0STCNT0 45 fields" in out
    part = Path("ticks") / "date=2024-03-04" / "063380.parquet"
    ticks = pq.read_table(tmp_path / "out" / part).to_pandas()
    # 1 book + 1 + 3 batched + 1 (line 8) + 1 trades + 1 status; the program record is carried.
    # Line 8 resends the first trade (ACML_VOL 10 again), stamped with the stock's later clock:
    # validation reports the jumps in cum_volume around it (sequence findings) and keeps the rows
    assert ticks["event_type"].tolist() == ["book", *["trade"] * 6, "status"]
    assert (
        ticks["cum_volume"].tolist()[1:7] == [10, 15, 20, 21, 10, 23]
        and ticks["program_net_buy"].iloc[-1] == 5
    )
    assert (
        "Gaps in cum_volume (dropped trades): 1 partition(s)" in out and "│ -21 │" in out and "│ 11 │" in out
    )
    assert not (tmp_path / "out" / "quarantine" / part).exists()
    vi_log = pq.read_table(tmp_path / "out" / "vi_log.parquet").to_pylist()
    assert [(v["vi_type"], v["direction"], v["trigger_price"], v["ref_price"]) for v in vi_log] == [
        ("static", 1, 3245, 2950)
    ]
    assert vi_log[0]["trigger_ts"] == dt.datetime(2024, 3, 4, 9, 30, tzinfo=vi_log[0]["trigger_ts"].tzinfo)


def test_missing_stock_list_and_empty_sources_are_clear_errors(tmp_path, data_dir):
    shutil.copy(DATA / "corpus" / "frames.jsonl", tmp_path / "frames.jsonl")
    code, out = _run("ingest", str(tmp_path), "--format", "kis-log", "--out", str(tmp_path / "o"))
    assert code == 2 and "needs the stock list" in out
    (tmp_path / "empty").mkdir()
    code, out = _run("ingest", str(tmp_path / "empty"), "--format", "kis-log", "--out", str(tmp_path / "o"))
    assert code == 2 and "no KIS recordings" in out


def test_the_stock_list_may_name_the_other_members_of_the_expiry_band(tmp_path):
    (tmp_path / "stocks.csv").write_text(
        "stock_code,stock_name,market,kospi200,kosdaq150\n123450,비캡전자,KOSDAQ,N,Y\n005930,삼성전자,KOSPI,Y,N\n",
        encoding="utf-8",
    )
    stocks = load_stocks(tmp_path / "stocks.csv")
    assert {c: (s["kospi200"], s["kosdaq150"], s["futures_underlying"]) for c, s in stocks.items()} == {
        "123450": (False, True, False),  # no futures_underlying column: not a member
        "005930": (True, False, False),
    }


def test_a_dataset_without_sides_cannot_be_written_as_kis_frames(dataset, tmp_path):
    day_dir = sorted((dataset / "ticks").iterdir())[0]
    source = sorted(day_dir.glob("*.parquet"))[0]
    (tmp_path / "raw" / "ticks" / day_dir.name).mkdir(parents=True)
    for name in ("instruments.parquet", "vi_log.parquet"):
        shutil.copy(dataset / name, tmp_path / "raw" / name)
    t = pq.read_table(source)
    sides = pa.array([SIDE_UNKNOWN] * t.num_rows, pa.int8())
    pq.write_table(
        t.set_column(t.schema.get_field_index("side"), "side", sides),
        tmp_path / "raw" / "ticks" / day_dir.name / source.name,
    )
    day = day_dir.name.removeprefix("date=")
    code, out = _run("kis-export", str(tmp_path / "raw"), "--out", str(tmp_path / "rec"), "--date", day)
    assert code == 2 and f"stock {source.stem} at" in out and "without an aggressor side" in out


def test_a_vi_merging_into_the_closing_call_is_one_vi_status_record(tmp_path):
    """The engine flags a VI still running at 15:20 again as the closing call starts: the
    recording's VI-status response must hold it once, and the ingest must find it once."""
    day = dt.date(2024, 3, 5)
    ex = Exchange(Instrument("005930", "삼성전자", "KOSPI", kospi200=True), day, 70_000, seed=3)

    def at(h, m, s=0):
        return krx.at_seoul(day, dt.time(h, m, s))

    ex.submit_limit(at(8, 35), BUY, 70_000, 1)
    ex.submit_limit(at(8, 35), SELL, 70_000, 1)
    for p in range(70_500, 73_100, 500):
        ex.submit_limit(at(15, 19), SELL, p, 10)
    ex.submit_limit(at(15, 19, 30), BUY, 73_000, 200)
    ex.finish()
    raw = tmp_path / "raw"
    (raw / "ticks" / f"date={day}").mkdir(parents=True)
    pq.write_table(ex.ticks(), raw / "ticks" / f"date={day}" / "005930.parquet")
    pq.write_table(ex.vi_log(), raw / "vi_log.parquet")
    row = {"date": day, "stock_code": "005930", "stock_name": "삼성전자", "market": "KOSPI", "kospi200": True}
    pq.write_table(
        pa.Table.from_pylist(
            [row | {"kosdaq150": False, "futures_underlying": False, "base_price": 70_000}], INSTRUMENT_SCHEMA
        ),
        raw / "instruments.parquet",
    )
    assert ex.vi_log().num_rows == 1
    counts = export_recording(raw, tmp_path / "rec", day)
    assert counts["vi_status_rows"] == 1
    ingest_kis(tmp_path / "rec", tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "vi_log.parquet").num_rows == 1
    assert len(events_table(detect(tmp_path / "out"))) == 1


@pytest.mark.parametrize(("source", "block_bytes"), [("corpus", 700), ("recording", 300_000)])
def test_a_recording_read_in_small_blocks_comes_out_the_same(tmp_path, monkeypatch, source, block_bytes):
    """Blocks bound memory on a day of a watchlist: their size changes nothing, line numbers
    included (blocks end at line ends, even past a line longer than a block)."""
    whole = ingest_kis(DATA / source, tmp_path / "whole")
    monkeypatch.setattr("market.kis.recording.BYTES_PER_BLOCK", block_bytes)
    small = ingest_kis(DATA / source, tmp_path / "small")
    assert whole == small and small.files == 1
    for path in (tmp_path / "whole").rglob("*.parquet"):
        assert pq.read_table(path).equals(
            pq.read_table(tmp_path / "small" / path.relative_to(tmp_path / "whole"))
        )
