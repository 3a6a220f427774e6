"""Synthetic-market generation throughput: ticks per second with one process (the baseline) and
with one process per core, measured in the same run, and what that means for the seed scale
(10,000 VI events with --vi-intensity hot)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from bench.common import publish
from market.synthetic.generator import generate

SEED_SCALE_VIS = 10_000
WINDOW_S = 30  # event panels run from 30 s before the trigger to 30 s after the release


def ticks_in_event_windows(root: Path) -> int:
    con = duckdb.connect()
    return int(
        con.execute(f"""
        SELECT count(*) FROM read_parquet('{root}/ticks/*/*.parquet') t
        JOIN read_parquet('{root}/vi_log.parquet') v
          ON t.stock_code = v.stock_code
         AND t.timestamp BETWEEN v.trigger_ts - INTERVAL {WINDOW_S} SECOND
                             AND coalesce(v.release_ts, v.trigger_ts) + INTERVAL {WINDOW_S} SECOND
    """).fetchone()[0]
    )


def main(stocks: int = 12, days: int = 5) -> dict:
    cores = os.cpu_count() or 1
    rows, summaries = [], {}
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-"))
    try:
        generate(work / "warm", 1, 1, 1, dt.date(2024, 3, 4), "hot", 1)  # compile or load the numba cache
        for label, jobs in (("baseline: 1 process", 1), (f"{cores} processes", cores)):
            out = work / f"jobs{jobs}"
            s = generate(out, stocks, days, 7, dt.date(2024, 3, 4), "hot", jobs)
            summaries[jobs] = (s, out)
            rows.append(
                {
                    "run": label,
                    "stock_days": stocks * days,
                    "ticks": s.ticks,
                    "vis": s.vis,
                    "seconds": s.seconds,
                    "ticks_per_s": s.ticks / s.seconds,
                    "stock_days_per_s": stocks * days / s.seconds,
                }
            )
        best, out = summaries[cores]
        in_windows = ticks_in_event_windows(out)
        vis_per_stock_day = best.vis / (stocks * days)
        stock_days_needed = SEED_SCALE_VIS / vis_per_stock_day
        seed_minutes = stock_days_needed / rows[-1]["stock_days_per_s"] / 60
        notes = {
            "vis_per_stock_day_hot": round(vis_per_stock_day, 2),
            "ticks_in_event_windows_per_vi": round(in_windows / max(best.vis, 1)),
            "seed_scale_stock_days_for_10k_vis": round(stock_days_needed),
            "seed_scale_minutes_estimated": round(seed_minutes, 1),
            "seed_scale_ticks_in_windows_estimated": round(in_windows / max(best.vis, 1) * SEED_SCALE_VIS),
            "speedup_vs_baseline": round(rows[-1]["ticks_per_s"] / rows[0]["ticks_per_s"], 2),
            "target": "10,000 VIs (about 60M ticks inside event windows) in under 30 minutes",
        }
        publish("generation", "Synthetic market generation (hot intensity)", rows, notes)
        return {"rows": rows, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
