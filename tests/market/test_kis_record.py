"""`vicap record` end to end: the recorder against the loopback fake KIS replaying a VI, then
`vicap ingest --format kis-log` and `vicap events`: the same trades, books and VIs as the source."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
from collections import Counter

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import SecretStr

from market import krx
from market.kis.client import KisConfig, KisRest
from market.kis.recorder import DailyLog, RecorderConfig, record
from serving.fake_kis import FakeKis
from vicap.events_cmd import run_events
from vicap.ingest_cmd import run_ingest

KEYS = {"app_key": "fake-app-key", "app_secret": "fake-app-secret"}


def _config(fake: FakeKis) -> KisConfig:
    return KisConfig(
        app_key=SecretStr(KEYS["app_key"]),
        app_secret=SecretStr(KEYS["app_secret"]),
        account=SecretStr("50000000-01"),
        rest_url=fake.rest_url,
        ws_url=fake.ws_url,
        min_interval_s=0.01,
    )


def _record(fake: FakeKis, out, codes, drop_after: int = 0):
    async def main():
        async with KisRest(_config(fake), market_now_us=fake.now_us) as rest:
            config = RecorderConfig(
                out=out,
                codes=codes,
                stop_us=fake.feed.frames[-1][0] + 30_000_000,  # 30 s of replay for the last frames
                vi_poll_s=0.5,
                stock_rows=fake.feed.stock_rows,
            )
            if drop_after:
                fake.drop(after_frames=drop_after)
            return await record(config, rest, fake.ws_url, clock_us=fake.now_us, backoff_s=0.05)

    return asyncio.run(main())


def _events(table):
    """(second, kind, price, volume) of every trade, book, indicative and status row."""
    ts = pc.floor_temporal(table["timestamp"], unit="second").cast("int64").to_pylist()
    return list(
        zip(
            ts,
            table["event_type"].to_pylist(),
            table["price"].to_pylist(),
            table["volume"].to_pylist(),
            strict=True,
        )
    )


def test_a_recorded_vi_ingests_to_the_same_trades_books_and_vi(
    vi_day, vi_window, vi_feed, tmp_path, data_dir
):
    # H0STMKO0 has no time field: ingest stamps it by its receive second, and rows after it never
    # earlier. A replay stretches every ms of scheduling lag by its speed (120x: 10 ms is 1.2 s of
    # the replayed day), so this exact comparison replays at 20x (10 ms is 0.2 s)
    with FakeKis(vi_day.raw, vi_feed, speed=20) as fake:
        summary = _record(fake, tmp_path / "rec", [vi_day.code])
        sent = fake.stats["frames_sent"]
    data_sent = sent - summary.stream.control["PINGPONG"]
    assert summary.stream.frames == data_sent and summary.stream.reconnects == 0 and not summary.gaps
    assert summary.stream.control["SUBSCRIBE SUCCESS"] == 4 and summary.vi_rows == 1
    assert run_ingest(tmp_path / "rec", "kis-log", None, tmp_path / "raw", None) == 0
    assert run_events(tmp_path / "raw", tmp_path / "events") == 0

    lo, hi = (krx.at_seoul(vi_day.day, t) for t in vi_window)
    source = pq.read_table(vi_day.raw / "ticks" / f"date={vi_day.day}" / f"{vi_day.code}.parquet")
    source = source.filter(
        pc.and_(
            pc.greater_equal(source["timestamp"].cast("int64"), lo),
            pc.less_equal(source["timestamp"].cast("int64"), hi),
        )
    )
    again = pq.read_table(tmp_path / "raw" / "ticks" / f"date={vi_day.day}" / f"{vi_day.code}.parquet")
    src, rec = _events(source), _events(again)
    for kind in ("trade", "book", "indicative"):
        assert sorted(e for e in rec if e[1] == kind) == sorted(e for e in src if e[1] == kind), kind
    # H0STMKO0 carries no price and KIS stamps it by its receive second
    status = [
        (s[0], r[0])
        for s, r in zip(*(sorted(e for e in x if e[1] == "status") for x in (src, rec)), strict=True)
    ]
    assert len(status) >= 2 and all(0 <= r - s <= 1_000_000 for s, r in status)
    counts = {kind: sum(e[1] == kind for e in src) for kind in ("trade", "book", "indicative", "status")}
    print(f"round trip: {summary.stream.frames} frames, {dict(summary.stream.records)}, source rows {counts}")
    trigger_s = krx.epoch_us(vi_day.trigger) // 1_000_000
    vis = pq.read_table(tmp_path / "events" / "events.parquet").to_pylist()
    assert len(vis) == 1 and abs(vis[0]["trigger_ts"].timestamp() - trigger_s) <= 1
    vi_status = json.loads(next((tmp_path / "rec").glob("vi_status-*.json")).read_text())["output"]
    assert [r["mksc_shrn_iscd"] for r in vi_status] == [vi_day.code]


def test_a_drop_mid_vi_leaves_a_gap_marker_and_no_duplicate(vi_day, vi_feed, tmp_path, data_dir):
    with FakeKis(vi_day.raw, vi_feed, speed=120) as fake:
        summary = _record(fake, tmp_path / "rec", [vi_day.code], drop_after=300)
        assert fake.stats["drops"] == 1
        source = Counter(text for _, tr_id, _, text in fake.feed.frames if tr_id != "PINGPONG")
    assert summary.stream.reconnects == 1 and len(summary.gaps) == 1
    assert summary.stream.control["SUBSCRIBE SUCCESS"] == 8  # registered again after the drop
    lines = [
        json.loads(line) for line in next((tmp_path / "rec").glob("kis-*.jsonl")).read_text().splitlines()
    ]
    frames = [line["frame"] for line in lines if not line["frame"].startswith("{")]
    assert not Counter(frames) - source  # nothing received twice (alike books may repeat in the source)
    assert 300 < len(frames) < sum(source.values())  # the gap lost frames
    gaps = [json.loads(line["frame"]) for line in lines if "VICAP_GAP" in line["frame"]]
    assert len(gaps) == 1 and gaps[0]["header"]["reason"] == "connection closed: code 1006"
    assert run_ingest(tmp_path / "rec", "kis-log", None, tmp_path / "raw", None) == 0
    summary_file = json.loads((tmp_path / "raw" / "ingest_summary.json").read_text())
    assert summary_file["control_messages"]["VICAP_GAP"] == 1 and summary_file["lines_quarantined"] == 0


def test_the_daily_log_rotates_at_midnight_seoul_and_gzips_the_closed_day(tmp_path):
    log = DailyLog(tmp_path)
    before = krx.at_seoul(dt.date(2024, 3, 4), dt.time(23, 59, 59))
    log.write(before, '{"header": {"tr_id": "PINGPONG"}}')
    log.write(before + 2_000_000, '{"header": {"tr_id": "PINGPONG"}}')
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kis-20240304.jsonl.gz", "kis-20240305.jsonl"]
    with gzip.open(tmp_path / "kis-20240304.jsonl.gz", "rt") as fh:
        assert json.loads(fh.read())["recv_ts"] == "2024-03-04T23:59:59.000000+09:00"


def test_vicap_record_reads_its_credentials_from_the_environment(
    vi_day, vi_feed, tmp_path, data_dir, monkeypatch
):
    """The command end to end (wall clock: the replayed day's frames land in today's file)."""
    from typer.testing import CliRunner

    from vicap.cli import app

    (tmp_path / "stocks.csv").write_text("\n".join(vi_feed.stock_rows) + "\n", encoding="utf-8")
    with FakeKis(vi_day.raw, vi_feed, speed=120) as fake:
        env = {"APP_KEY": KEYS["app_key"], "APP_SECRET": KEYS["app_secret"], "REST_URL": fake.rest_url}
        env |= {"WS_URL": fake.ws_url, "TOKEN_CACHE": str(tmp_path / "cache")}
        for name, value in env.items():
            monkeypatch.setenv(f"VICAP_KIS_{name}", value)
        args = [
            "record",
            "--stock",
            vi_day.code,
            "--stocks",
            str(tmp_path / "stocks.csv"),
            "--duration",
            "1.5",
        ]
        result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "rec"), "--vi-poll", "0.5"])
    assert result.exit_code == 0, result.output
    assert "KIS feed recorded to" in result.output and "SUBSCRIBE SUCCESS" in result.output
    (recording,) = (tmp_path / "rec").glob("kis-*.jsonl")
    assert len(recording.read_text().splitlines()) > 100 and (tmp_path / "rec" / "stocks.csv").exists()
    assert KEYS["app_secret"] not in result.output
