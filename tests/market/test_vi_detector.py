"""The streaming VI detector, from exchange flags and from the KRX rules alone, against the
exchange's own VI log."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market import krx
from market.events.detector import MarketEvent, StockDay, VIDetector
from market.events.table import EVENT_SCHEMA, agreement, detect, events_table, load_stock_days
from market.exchange.engine import BUY, SELL, Exchange, Instrument
from market.krx.schema import SIDE_SELL, VI_STATUS_AUCTION, check_table
from vicap.cli import app


@pytest.fixture(scope="module")
def logged(dataset):
    return pq.read_table(dataset / "vi_log.parquet")


def test_from_flags_every_vi_exactly(dataset_events, logged):
    table = dataset_events  # events_table(detect(dataset, use_flags=True)), replayed once a session
    check_table(table, EVENT_SCHEMA)
    a = agreement(table, logged, tolerance_s=0)
    assert (a.precision, a.recall) == (1.0, 1.0)
    assert a.same_type == a.same_auction_price == a.matched == logged.num_rows
    ev = table.to_pandas().merge(logged.to_pandas(), on=["stock_code", "trigger_ts"])
    static = ev[ev.vi_type_x != "dynamic"]
    assert (static.static_ref == static.ref_price).all() and (ev.direction_x == ev.direction_y).all()


def test_from_the_rules_alone(dataset, logged):
    table = events_table(detect(dataset, use_flags=False))
    a = agreement(table, logged, tolerance_s=30)
    assert (a.precision, a.recall) == (1.0, 1.0)
    assert a.same_auction_price == a.matched
    assert a.same_type >= 0.9 * a.matched


def test_streaming_one_event_at_a_time():
    day = dt.date(2024, 3, 5)
    ex = Exchange(Instrument("005930", "삼성전자", "KOSPI", kospi200=True), day, 70_000)

    def at(h, m, s=0):
        return krx.epoch_us(dt.datetime(2024, 3, 5, h, m, s, tzinfo=krx.SEOUL))

    ex.submit_limit(at(8, 35), BUY, 70_000, 1)
    ex.submit_limit(at(8, 35), SELL, 70_000, 1)
    for p in range(70_100, 73_100, 100):
        ex.submit_limit(at(9, 1), SELL, p, 10)
    ex.submit_limit(at(9, 2), BUY, 73_000, 300)
    ex.finish()
    ticks = ex.ticks().to_pylist()
    info = {("005930", day): StockDay(day, "KOSPI", True, 70_000)}
    for use_flags in (True, False):
        detector = VIDetector(info, use_flags=use_flags)
        emitted = []
        for r in ticks:
            ev = MarketEvent(
                krx.epoch_us(r["timestamp"]),
                r["stock_code"],
                r["event_type"],
                r["price"],
                r["volume"],
                r["side"],
                r["vi_status"] if use_flags else -1,
                r["vi_type"],
            )
            emitted += [(r["event_type"], vi.released) for vi in detector.on_event(ev)]
        want = [("status", False), ("trade", True)] if use_flags else [("trade", True)]
        assert emitted == want
    log = ex.vi_log().to_pylist()[0]
    assert (log["vi_type"], log["trigger_price"]) == ("dynamic", 72_100)
    with pytest.raises(KeyError, match="no instrument record for stock 000660"):
        VIDetector(info).on_event(
            MarketEvent(
                krx.epoch_us(dt.datetime(2024, 3, 5, 9, tzinfo=krx.SEOUL)), "000660", "trade", 1, 1, 1
            )
        )


def test_a_flagged_auction_without_its_status_row_takes_its_direction_from_the_first_indicative():
    """A whipsaw (KIS stamps whole seconds; the book's VI code opens the auction): a dump prints
    below the dynamic reference, then a buy order fires the VI upward within the same second. The
    last print points down; the auction's first indicative price points the right way."""
    day = dt.date(2024, 3, 5)
    t0 = krx.epoch_us(dt.datetime(2024, 3, 5, 9, 21, 14, tzinfo=krx.SEOUL))
    detector = VIDetector({("005930", day): StockDay(day, "KOSPI", True, 10_000)})
    for ts, price in ((t0 - 60_000_000, 10_000), (t0, 10_000), (t0 + 1_000_000, 9_950)):
        detector.on_event(MarketEvent(ts, "005930", "trade", price, 10, SIDE_SELL, 0))
    indicative = MarketEvent(
        t0 + 1_000_000, "005930", "indicative", 10_350, 10, 0, VI_STATUS_AUCTION, "dynamic"
    )
    (vi,) = detector.on_event(indicative)
    assert (vi.vi_type, vi.direction, vi.trigger_price, vi.dynamic_ref) == ("dynamic", 1, 10_350, 10_000)


def test_a_vi_inside_the_estimated_bands_takes_its_direction_from_the_last_print():
    """Whole-second stamps (a KIS recording without the VI-status REST record): the price rose
    within the trigger second, then a sell order fired a VI down from the top. The reference the
    detector can estimate (the last print of an earlier second) puts the auction's price inside
    both bands, so the type is unknown; the direction is from the last print, which the
    triggering order's in-band fills left above the auction's price."""
    day = dt.date(2024, 3, 5)
    sec = krx.epoch_us(dt.datetime(2024, 3, 5, 10, 25, 53, tzinfo=krx.SEOUL))
    detector = VIDetector({("005930", day): StockDay(day, "KOSPI", True, 10_000)})
    for ts, price in ((sec - 60_000_000, 10_000), (sec, 10_350), (sec, 10_330)):
        detector.on_event(MarketEvent(ts, "005930", "trade", price, 10, SIDE_SELL, 0))
    # 3.2% under the top, 0.2% over the estimated reference
    (vi,) = detector.on_event(MarketEvent(sec, "005930", "indicative", 10_020, 10, 0, VI_STATUS_AUCTION))
    assert (vi.vi_type, vi.direction, vi.dynamic_ref) == ("unknown", -1, 10_000)


def test_events_cli(dataset, tmp_path):
    result = CliRunner().invoke(app, ["events", str(dataset), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "100.00%" in result.output and (tmp_path / "ev" / "events.parquet").exists()
    assert len(load_stock_days(dataset / "instruments.parquet")) == 18
    missing = CliRunner().invoke(app, ["events", str(tmp_path), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2


def move_open_prints(src: Path, dst: Path, seed: int) -> int:
    """A copy of ``src`` whose opening prints come at random instants of 09:00:00-09:00:30 (any
    microsecond), as in real data: rows before the print are held back to it, rows after it wait
    for it. Stock-days whose opening call a VI extended keep their rows. Returns how many moved."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(seed)
    moved = 0
    for path in sorted((dst / "ticks").glob("date=*/*.parquet")):
        t = pq.read_table(path)
        day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
        nominal = krx.epoch_us(krx.session_schedule(day).continuous_start)
        ts = t["timestamp"].cast(pa.int64()).to_numpy().copy()
        trades = np.flatnonzero(t["event_type"].to_numpy(zero_copy_only=False) == "trade")
        first = trades[0]
        if ts[first] > nominal + 30_000_000:
            continue
        new = nominal + int(rng.integers(0, 30_000_001))
        ts[:first] = np.minimum(ts[:first], new)
        ts[first] = new
        ts[first + 1 :] = np.maximum(ts[first + 1 :], new)
        column = pa.array(ts, pa.timestamp("us")).cast(t.schema.field("timestamp").type)
        pq.write_table(t.set_column(0, "timestamp", column), path)
        moved += 1
    return moved


def test_rules_alone_find_exactly_the_logged_vis_when_opens_come_at_random_instants(
    dataset, logged, tmp_path
):
    assert move_open_prints(dataset, tmp_path / "raw", seed=5) >= 15
    out = tmp_path / "events"
    result = CliRunner().invoke(app, ["events", str(tmp_path / "raw"), "--out", str(out), "--rules-only"])
    assert result.exit_code == 0, result.output
    a = agreement(pq.read_table(out / "events.parquet"), logged, tolerance_s=30)
    assert (a.precision, a.recall) == (1.0, 1.0) and a.same_auction_price == a.matched
