"""The live executor's speed: tick-to-order latency (a batch of rows arriving -> the order handed to
the broker) on a replay at 1x and accelerated, with the model in-process, over HTTP from a real
``bentoml serve``, and replaced by a constant (what the model costs); and the feed rate it
sustains (rows a second at full speed on the day's busiest stretch, the open) beside the rate the
open actually brings, and the KIS frames -> tick rows step (``market.kis.live``) by batch size.
All on one hot synthetic market, in one run."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.execution import ExecutionConfig
from backtest.strategies import ModelStrategy
from bench.common import publish
from bench.serving import _prepare
from feature_repo import store as S
from market import krx
from market.events.table import load_stock_days
from market.kis.export import build_feed
from market.kis.live import LiveTicks
from market.krx.dataset import read_stock_list
from serving.alerts import AlertConfig, Alerts
from serving.brokers import SimBroker
from serving.executor import Executor
from serving.journal import Journal
from serving.risk import RiskLimits, RiskManager
from serving.sources import ReplaySource
from vicap.live_cmd import http_model, in_process_model
from vicap.serve_cmd import ServiceProcess, serve_environment
from vicap.settings import get_settings

CONSTANT = {"continuation_60s": 1.0, "rebound_60s": 1.0, "expected_return_60s": 0.0, "entry_second": 0.0}
LOOSE = RiskLimits(max_positions=1_000, max_orders_per_minute=10_000, daily_loss_limit=10**12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _busiest(events: pd.DataFrame, day: dt.date, minutes: float) -> tuple[dt.time, dt.time]:
    """The stretch of ``minutes`` of ``day`` holding the most VI releases, from 150 s before it
    (the features' look-back)."""
    rel = events[events["release_ts"].dt.date == day]["release_ts"].sort_values().reset_index(drop=True)
    span = pd.Timedelta(minutes=minutes)
    counts = [((rel >= t) & (rel < t + span)).sum() for t in rel]
    start = rel[int(np.argmax(counts))] - pd.Timedelta(seconds=5)
    return (start - pd.Timedelta(seconds=150)).time(), (start + span).time()


def _session(work: Path, paths, day, codes, window, speed: float, model) -> dict:
    """One executor session over the replay; its latencies and rate."""
    source = ReplaySource(paths.root.parent / "raw", day, codes, speed, *window)
    store = S.open_store(paths.feast)
    tapes: dict = {}
    journal_file = work / f"journal-{time.monotonic_ns()}.sqlite"
    journal = Journal(journal_file)
    ex = Executor(
        stock_days=source.stock_days, tapes=tapes, strategy=ModelStrategy(threshold=0.0),
        risk=RiskManager(LOOSE), broker=SimBroker(tapes.get, ExecutionConfig(), 10**12), journal=journal,
        alerts=Alerts(AlertConfig()), model=model, push=S.OnlinePusher(store).push,
        feed_clock=source.feed_clock, stamp_us=source.stamp_us,
    )  # fmt: skip
    t0 = time.perf_counter()
    asyncio.run(ex.run(source))
    wall = time.perf_counter() - t0
    journal.close()
    lat = np.array(ex.stats.latencies_ns) / 1e6
    return {
        "orders": len(lat),
        "p50 ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99 ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "max ms": float(lat.max()) if len(lat) else float("nan"),
        "rows": ex.stats.rows,
        "rows/s": ex.stats.rows / wall,
        "decisions": ex.stats.decisions,
    }


def _speed(speed: float, window: tuple[dt.time, dt.time]) -> str:
    return f"{speed:g}x {window[0]:%H:%M:%S}-{window[1]:%H:%M:%S}"


def _open_rate(raw: Path, day: dt.date, codes: list[str]) -> tuple[float, float]:
    """Rows a second the open brings (09:00-09:05): the mean and the busiest second."""
    from market.krx.dataset import read_accepted, tick_file

    stamps = []
    for c in codes:
        t = read_accepted(raw, tick_file(raw, day, c), ["timestamp"])["timestamp"].to_pandas()
        stamps.append(t[(t.dt.time >= dt.time(9, 0)) & (t.dt.time < dt.time(9, 5))])
    per_second = pd.concat(stamps).dt.floor("s").value_counts()
    return float(per_second.sum() / 300), float(per_second.max())


def _kis_rows(raw: Path, day: dt.date, codes: list[str]) -> list[dict]:
    """LiveTicks on the open's KIS frames (09:00-09:05), by batch size."""
    feed = build_feed(raw, day, codes, dt.time(9, 0), dt.time(9, 5))
    stocks_csv = Path(tempfile.mkdtemp()) / "stocks.csv"
    stocks_csv.write_text("\n".join(feed.stock_rows) + "\n", encoding="utf-8")
    stocks = read_stock_list(stocks_csv).set_index("stock_code").to_dict("index")
    frames = [(recv, text) for recv, _, _, text in feed.frames]
    out = []
    for n in (1, 10, 100):
        ticks = LiveTicks(stocks)
        t0 = time.perf_counter()
        for i in range(0, len(frames), n):
            ticks.on_frames(frames[i : i + n])
        wall = time.perf_counter() - t0
        out.append(
            {"path": f"KIS frames -> tick rows (market.kis.live), {n} a batch",
             "frames/s": len(frames) / wall, "ms a batch": wall / -(-len(frames) // n) * 1e3}
        )  # fmt: skip
    return out


def main(stocks: int = 6, days: int = 2, slow_minutes: float = 1.0, fast_minutes: float = 20.0) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-live-"))
    tag = None
    try:
        paths, _, tag = _prepare(work, stocks, days)
        raw = work / "raw"
        events = pd.read_parquet(paths.events).dropna(subset=["release_ts"])
        day = max(events["release_ts"].dt.date)
        codes = sorted({c for c, d in load_stock_days(raw / "instruments.parquet") if d == day})
        krx.session_schedule(day)  # the calendar loads once, outside every clock
        settings = get_settings(data_dir=paths.root)
        in_process = in_process_model(settings, tag)
        rows = []
        slow, fast = _busiest(events, day, slow_minutes), _busiest(events, day, fast_minutes)
        constant = lambda e, k: CONSTANT  # noqa: E731
        # 1x replays in real time (the 150 s before the stretch included): the model only
        runs = [("in-process model", 1.0, slow, in_process), ("in-process model", 20.0, fast, in_process),
                ("constant (no model)", 20.0, fast, constant)]  # fmt: skip
        for label, speed, window, model in runs:
            r = _session(work, paths, day, codes, window, speed, model)
            rows.append({"path": label, "speed": _speed(speed, window), **r})
        env = serve_environment(get_settings(), tag, "", paths.root)
        with ServiceProcess(env, port=_free_port(), log=work / "serve.log") as svc:
            r = _session(work, paths, day, codes, fast, 20.0, http_model(svc.url, None))
            rows.append({"path": "model over HTTP (bentoml serve)", "speed": _speed(20.0, fast), **r})
        opening = (dt.time(8, 59), dt.time(9, 10))
        r = _session(work, paths, day, codes, opening, 0.0, in_process)
        rows.append({"path": "in-process model", "speed": "full, 08:59-09:10 (the open)", **r})
        mean_rate, peak_rate = _open_rate(raw, day, codes)
        kis = _kis_rows(raw, day, codes)
        publish(
            "live",
            f"live executor: tick to order ({len(codes)} stocks, hot synthetic market, 2 cores)",
            rows,
            {
                "target": "p99 tick to order < 20 ms",
                "the open's feed (09:00-09:05)": f"{mean_rate:,.0f} rows/s on average, "
                f"{peak_rate:,.0f} in its busiest second",
                "executor at full speed on the open": f"{rows[-1]['rows/s']:,.0f} rows/s",
                **{k["path"]: f"{k['frames/s']:,.0f} frames/s, {k['ms a batch']:.1f} ms each" for k in kis},
            },
        )  # fmt: skip
        return {"rows": rows, "kis": kis}
    finally:
        if tag:
            import bentoml

            bentoml.models.delete(tag)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
