"""The live KIS feed turned into tick rows batch by batch (market/kis/live.py), as the recording
ingest turns the recording of the same frames: the same rows per stock-day whatever the batches,
each stock-day's base price known before its first row, every frame counted or quarantined."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import krx
from market.events.detector import StockDay
from market.kis import formats as kis
from market.kis.ingest import KisReport, ingest_kis, load_stocks
from market.kis.live import LIVE_FILE, LiveTicks
from market.kis.recording import STOCKS_FILE
from market.kis.stream import GAP, Gap
from market.krx.schema import INSTRUMENT_SCHEMA

DATA = Path(__file__).resolve().parents[1] / "data" / "kis"
RECORDING = next((DATA / "recording").glob("kis-*.jsonl.gz"))


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _readable(text: str) -> dict | None:
    """A recording line the ingest reads (the rest never reach a live feed: they are not frames)."""
    try:
        line = json.loads(text)
        recv = dt.datetime.fromisoformat(line["recv_ts"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return line if recv.tzinfo is not None and isinstance(line.get("frame"), str) else None


def _frames(lines: list[dict]) -> list[tuple[int, str]]:
    return [(krx.epoch_us(dt.datetime.fromisoformat(x["recv_ts"])), x["frame"]) for x in lines]


def _write(rec: Path, lines: list[dict], stocks: Path) -> Path:
    rec.mkdir(parents=True)
    shutil.copy(stocks, rec / STOCKS_FILE)
    (rec / "kis.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return rec


@dataclasses.dataclass
class Ingested:
    rows: dict[tuple[str, dt.date], list[dict]]
    report: KisReport
    refused: list[dict]
    stock_days: dict[tuple[str, dt.date], StockDay]


def _ingest(rec: Path, out: Path) -> Ingested:
    """What ``ingest_kis`` wrote: rows per stock-day in file order, quarantine, base prices."""
    report = ingest_kis(rec, out)
    rows = {
        (p.stem, dt.date.fromisoformat(p.parent.name.removeprefix("date="))): pq.read_table(p).to_pylist()
        for p in (out / "ticks").glob("date=*/*.parquet")
    }
    quarantine = out / "quarantine" / "ingest" / "kis.parquet"
    refused = pq.read_table(quarantine).to_pylist() if quarantine.exists() else []
    instruments = pq.read_table(out / "instruments.parquet").to_pylist()
    stock_days = {(r["stock_code"], r["date"]): StockDay.from_instrument(r) for r in instruments}
    return Ingested(rows, report, refused, stock_days)


def _feed(live: LiveTicks, frames: list[tuple[int, str]], sizes: Iterator[int]) -> dict:
    """The frames through ``live`` in batches of ``sizes``: rows per stock-day, in order."""
    rows: dict[tuple[str, dt.date], list[dict]] = defaultdict(list)
    i = 0
    while i < len(frames):
        n = next(sizes)
        for row in live.on_frames(frames[i : i + n]):
            key = (row["stock_code"], row["timestamp"].date())
            assert key in live.stock_days  # the detector needs the stock-day before its first row
            rows[key].append(row)
        i += n
    return dict(rows)


def _random_sizes(seed: int) -> Iterator[int]:
    """One frame, a few, tens, and many at once."""
    rng = random.Random(seed)
    while True:
        yield rng.choice([1, 1, 1, rng.randint(2, 5), rng.randint(6, 60), rng.randint(61, 2_000)])


def _assert_same(live: LiveTicks, frames: list, ingested: Ingested, rows: dict) -> None:
    assert rows.keys() == ingested.rows.keys()
    for key, want in ingested.rows.items():
        assert len(rows[key]) == len(want), key
        for i, (got, expected) in enumerate(zip(rows[key], want, strict=True)):
            assert got == expected, (key, i, {k: (got[k], v) for k, v in expected.items() if got[k] != v})
    assert live.stock_days == ingested.stock_days and live.held == 0
    assert dataclasses.replace(live.report, files=ingested.report.files) == ingested.report
    assert live.report.lines == len(frames)
    assert [_refusal(r) for r in live.refused.rows] == [_refusal(r) for r in ingested.refused]
    assert {r["file"] for r in live.refused.rows} <= {LIVE_FILE}


def _refusal(row: dict) -> tuple:
    """A quarantine row but its file and the spelling of its receive time (a recording keeps the
    text it was given; live, the time is spelt to the microsecond)."""
    recv = dt.datetime.fromisoformat(row["recv_ts"]) if row["recv_ts"] else None
    raw = json.loads(row["raw"])["frame"] if row["record"] == -1 else row["raw"]
    return row["line"], recv, row["record"], row["reason"], raw


def _with_hazards(lines: list[dict]) -> list[dict]:
    """The shipped recording with what it lacks: H0STPGM0 frames (program_net_buy is carried),
    H0STASP0 records grown to 62 fields, trade frames cut short, a record of an unknown stock."""
    out, net = [], defaultdict(int)
    trades = [i for i, x in enumerate(lines) if x["frame"].startswith("0|H0STCNT0|001|880770")]
    cut = {trades[len(trades) // 4], trades[len(trades) // 2]}
    unknown = trades[len(trades) * 3 // 4]
    for i, line in enumerate(lines):
        frame = line["frame"]
        if frame.startswith("0|H0STASP0|001|") and i % 7 == 0:
            frame += "^1^2^3"  # 3 fields appended, as public clients saw
        out.append({**line, "frame": frame})
        if frame.startswith("0|") and i % 40 == 0:
            code = frame.split("|")[3][:6]
            net[code] += 1_000 * (1 if i % 3 else -2)
            hhmmss = line["recv_ts"][11:19].replace(":", "")
            record = {"MKSC_SHRN_ISCD": code, "STCK_CNTG_HOUR": hhmmss, "NTBY_CNQN": str(net[code])}
            out.append({**line, "frame": kis.format_frame(kis.PROGRAM, [record])})
        if i in cut:
            out.append({**line, "frame": frame[: len(frame) // 3]})
        if i == unknown:
            out.append({**line, "frame": frame.replace("|880770^", "|123456^", 1)})
    return out


def test_a_recording_fed_in_batches_of_any_size_gives_the_rows_the_ingest_writes(tmp_path):
    lines = _with_hazards(_lines(RECORDING))
    rec = _write(tmp_path / "rec", lines, DATA / "recording" / STOCKS_FILE)  # without the VI-status REST
    ingested = _ingest(rec, tmp_path / "out")
    report = ingested.report
    assert report.drift and report.lines_quarantined and report.records_quarantined  # the hazards are in
    assert any(r["program_net_buy"] for rows in ingested.rows.values() for r in rows)
    assert any(r["vi_status"] for rows in ingested.rows.values() for r in rows)
    live = LiveTicks(load_stocks(rec / STOCKS_FILE), stock_day=StockDay.from_instrument)
    frames = _frames(lines)
    _assert_same(live, frames, ingested, _feed(live, frames, _random_sizes(seed=7)))


def test_a_feed_that_starts_mid_day_during_a_vi_gives_the_ingested_rows(tmp_path):
    lines = _lines(RECORDING)
    start = next(i for i, x in enumerate(lines) if "|H0STMKO0|" in x["frame"] and "^Y^" in x["frame"])
    lines = lines[start + 5 :]  # the VI auction is running; the day so far is missed
    rec = _write(tmp_path / "rec", lines, DATA / "recording" / STOCKS_FILE)
    ingested = _ingest(rec, tmp_path / "out")
    live = LiveTicks(load_stocks(rec / STOCKS_FILE), stock_day=StockDay.from_instrument)
    frames = _frames(lines)
    sizes = iter([1] * 200 + [500] * len(frames))
    rows = _feed(live, frames, sizes)
    _assert_same(live, frames, ingested, rows)
    first_trade = next(r for r in rows[("880770", dt.date(2024, 3, 4))] if r["event_type"] == "trade")
    assert first_trade["cum_volume"] > first_trade["volume"]  # ACML_VOL: the day's volume so far


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[list[tuple[int, str]], Ingested]:
    """KIS's and public clients' published frames: drifted widths, batched records, a program
    record carried, several days that all start mid-session, a tr_id vicap does not read."""
    out = tmp_path_factory.mktemp("published")
    return _frames(_lines(DATA / "published" / "frames.jsonl")), _ingest(DATA / "published", out / "out")


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 15), min_size=15, max_size=15))
def test_published_frames_in_any_batches_give_the_ingested_rows(published, sizes):
    frames, ingested = published
    live = LiveTicks(load_stocks(DATA / "published" / STOCKS_FILE), stock_day=StockDay.from_instrument)
    rows = _feed(live, frames, iter(sizes))
    assert ingested.report.drift and live.report.drift == ingested.report.drift
    _assert_same(live, frames, ingested, rows)


def test_malformed_frames_are_quarantined_with_their_reason_and_every_frame_is_counted(tmp_path):
    lines = [x for x in map(_readable, (DATA / "corpus" / "frames.jsonl").read_text().splitlines()) if x]
    rec = _write(tmp_path / "rec", lines, DATA / "corpus" / STOCKS_FILE)
    ingested = _ingest(rec, tmp_path / "out")
    live = LiveTicks(load_stocks(rec / STOCKS_FILE), stock_day=StockDay.from_instrument)
    frames = _frames(lines)
    rows = _feed(live, frames, iter([1] * len(frames)))  # never raises
    _assert_same(live, frames, ingested, rows)
    r = live.report
    assert r.balanced and len(frames) == r.data_frames + sum(r.control.values()) + r.lines_quarantined
    assert r.records == r.records_accepted + r.records_quarantined and r.records_quarantined
    reasons = [row["reason"] for row in live.refused.rows]
    assert "encrypted frame (H0STCNT0): AES-encrypted order notices are not market data" in reasons
    assert "unknown tr_id 'H0STXXX0'" in reasons
    assert "stock_code '999999' is not in stocks.csv" in reasons
    assert "H0STCNT0 STCK_PRPR: 'abc' is not an integer" in reasons


def test_rows_wait_for_their_stock_days_base_price_and_come_out_in_order():
    code, day = "063380", dt.date(2024, 3, 4)
    live = LiveTicks(load_stocks(DATA / "recording" / STOCKS_FILE))  # stock-days as instrument rows
    vi_push = kis.format_frame(kis.MARKET_OP, [{"MKSC_SHRN_ISCD": code, "TRHT_YN": "N", "VI_CLS_CODE": "N"}])
    t = krx.at_seoul(day, dt.time(8, 40))
    assert live.on_frames([(t, vi_push)]) == [] and live.held == 1 and not live.stock_days
    book = next(x for x in _lines(RECORDING) if x["frame"].startswith(f"0|H0STASP0|001|{code}"))
    rows = live.on_frames(_frames([book]))
    assert [r["event_type"] for r in rows] == ["status", "indicative"] and live.held == 0
    instrument = live.stock_days[(code, day)]
    assert list(instrument) == INSTRUMENT_SCHEMA.names and instrument["date"] == day
    assert instrument["base_price"] == 13_680 - 210  # ANTC_CNPR - ANTC_CNTG_VRSS


def test_a_gap_marker_is_counted_among_the_control_messages():
    live = LiveTicks(load_stocks(DATA / "recording" / STOCKS_FILE), stock_day=StockDay.from_instrument)
    gap = Gap(1_709_510_400_000_000, 1_709_510_405_000_000, "connection closed: code 1006")
    assert live.on_frames([(gap.end_us, gap.frame())]) == [] and live.on_frames([]) == []
    assert live.report.control == {GAP: 1} and live.report.balanced and not live.refused.rows
