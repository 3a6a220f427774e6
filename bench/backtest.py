"""Replay throughput of the backtester: market events (tick rows inside the events' windows) per
second of wall time, strategy callbacks included, beside a plain pandas loop over the same events
doing the same trades (buy at the release after the latency, sell 60 s later) in the same run."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from backtest.data import load_events
from backtest.engine import BacktestConfig, Backtester
from backtest.execution import ExecutionConfig
from backtest.strategies import BuyAndHold
from backtest.strategy import Decision
from backtest.tapestore import TapeStore
from bench.common import publish
from market.events.table import detect, events_table
from market.krx.clock import US_PER_SECOND, series_us
from market.synthetic.generator import generate

WINDOW_S = 330
HOLD_S = 60


def pandas_loop(root: Path, events: list, latency_us: int) -> tuple[int, list[tuple[int, int]]]:
    """Row by row over each event's window with ``itertuples``: the first row at or after the
    decision plus the latency buys at its best ask, the first row 60 s after that sells at its best bid."""
    rows, trades = 0, []
    frame, frame_key = None, None
    for ev in events:
        if frame_key != (ev.stock_code, ev.day):
            path = root / "ticks" / f"date={ev.day}" / f"{ev.stock_code}.parquet"
            frame = pd.read_parquet(
                path, columns=["timestamp", "event_type", "price", "bid_price_1", "ask_price_1"]
            )
            frame["ts"] = series_us(frame["timestamp"])
            frame_key = (ev.stock_code, ev.day)
        decision = -(-ev.release_ts // US_PER_SECOND) * US_PER_SECOND
        end = ev.release_ts + WINDOW_S * US_PER_SECOND
        window = frame[(frame["ts"] >= ev.release_ts) & (frame["ts"] <= end)]
        bought_at = entry = None
        sold = False
        for r in window.itertuples():  # every row of the window, as a replay sees them
            rows += 1
            if entry is None and r.ts >= decision + latency_us and r.ask_price_1 > 0:
                entry, bought_at = r.ask_price_1, r.ts
            elif (
                entry is not None
                and not sold
                and r.ts >= bought_at + HOLD_S * US_PER_SECOND
                and r.bid_price_1 > 0
            ):
                trades.append((entry, r.bid_price_1))
                sold = True
    return rows, trades


def main(stocks: int = 12, days: int = 5) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-backtest-"))
    try:
        root = work / "raw"
        generate(root, stocks, days, 21, dt.date(2024, 3, 4), "hot", 2)
        pq.write_table(events_table(detect(root)), work / "events.parquet")
        instruments = root / "instruments.parquet"
        events, _ = load_events(work / "events.parquet", instruments)
        tapes = TapeStore(root, instruments, cache_dir=work / "cache")
        t0 = time.perf_counter()
        for ev in events:
            tapes(ev.stock_code, ev.day)
        load_s = time.perf_counter() - t0
        decisions = {
            ev.event_id: [
                Decision(
                    ev, k, -(-ev.release_ts // US_PER_SECOND) * US_PER_SECOND + k * US_PER_SECOND, 0, {}, {}
                )
                for k in range(10)
            ]
            for ev in events
        }
        cfg = ExecutionConfig()
        bt = Backtester(tapes, BacktestConfig(cfg, window_s=WINDOW_S))
        bt.run(BuyAndHold(HOLD_S), events, decisions)  # load the numba kernels
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run = bt.run(BuyAndHold(HOLD_S), events, decisions)
            times.append(time.perf_counter() - t0)
        bt_s = float(np.median(times))
        t0 = time.perf_counter()
        base_rows, base_trades = pandas_loop(root, events, cfg.entry_latency_us)
        base_s = time.perf_counter() - t0
        trades = run.trades_frame()
        buys = trades[trades["side"] == "buy"].groupby("event_id")["price"].first()
        rows = [
            {
                "implementation": "vicap backtester (buy-and-hold, 30 ms latency; median of 3)",
                "events": len(events),
                "market_events": run.rows_replayed,
                "seconds": bt_s,
                "events_per_s": run.rows_replayed / bt_s,
            },
            {
                "implementation": "baseline: pandas itertuples loop",
                "events": len(events),
                "market_events": base_rows,
                "seconds": base_s,
                "events_per_s": base_rows / base_s,
            },
        ]
        notes = {
            "speedup_vs_pandas": round((run.rows_replayed / bt_s) / (base_rows / base_s), 1),
            "tape_load_seconds": round(load_s, 2),
            "tape_rows_loaded": int(sum(len(tapes(*key)) for key in {(e.stock_code, e.day) for e in events})),
            "round_trips_backtester": len(buys),
            "round_trips_baseline": len(base_trades),
            "mean_entry_price_backtester": float(buys.mean()) if len(buys) else float("nan"),
            "mean_entry_price_baseline": float(np.mean([b for b, _ in base_trades]))
            if base_trades
            else float("nan"),
            "target": "at least 1,000,000 market events per second",
        }
        publish("backtest", "Backtest replay throughput", rows, notes)
        return {"rows": rows, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
