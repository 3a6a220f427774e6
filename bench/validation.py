"""Tick validation throughput (rows per second through the full GX tick suite, verdict, Data Docs
and report included): vicap's runner in one process, in a process per core (the default) and as
Ray tasks, beside the single-process loop it replaced (``bench/validation_serial.py``), all in
the same run on the same partitions; and the estimate for the seed's scale (about 562M rows)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import publish
from bench.validation_serial import validate_serial
from market.synthetic.generator import generate
from validation.runner import validate_dataset

SEED_SCALE_ROWS = 562e6


def main(stocks: int = 6, days: int = 3) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-validation-"))
    cores = os.cpu_count() or 1
    try:
        root = work / "raw"
        generate(root, stocks, days, 5, dt.date(2024, 3, 4), "hot", cores)
        baseline_root = work / "baseline"
        shutil.copytree(root, baseline_root)
        t0 = time.perf_counter()
        n = validate_serial(baseline_root, work / "gx-baseline")
        timings = {"baseline: single-process loop (f3e05c3)": time.perf_counter() - t0}
        for label, jobs, ray_address in (
            ("vicap runner, 1 process", 1, None),
            (f"vicap runner, {cores} processes (default)", cores, None),
            (f"vicap runner, Ray tasks (local, {cores} CPUs)", cores, "local"),
        ):
            t0 = time.perf_counter()
            report = validate_dataset(
                root, work / f"gx-{jobs}-{ray_address}", jobs=jobs, ray_address=ray_address
            )
            timings[label] = time.perf_counter() - t0
            assert report.ok and report.rows_in == n, "the benchmark data must validate clean"
        rows = [
            {"implementation": k, "partitions": stocks * days, "rows": n, "seconds": s, "rows_per_s": n / s}
            for k, s in timings.items()
        ]
        baseline = next(iter(timings.values()))
        default = timings[f"vicap runner, {cores} processes (default)"]
        notes = {
            "cores": cores,
            "speedup_default_vs_baseline": round(baseline / default, 2),
            "seed_scale_minutes_estimated_562M_rows_default": round(SEED_SCALE_ROWS / (n / default) / 60, 1),
            "seed_scale_minutes_estimated_562M_rows_baseline": round(
                SEED_SCALE_ROWS / (n / baseline) / 60, 1
            ),
        }
        publish("validation", "Tick validation throughput (GX tick suite, verdict, Data Docs)", rows, notes)
        return {"rows": rows, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
