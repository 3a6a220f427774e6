"""Great Expectations validation throughput (tick rows per second through the full tick suite),
as vicap prepares each batch (categorical labels, consolidated blocks) beside the frame as read
from Parquet, measured in the same run on the same partitions."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import publish
from market import krx
from market.synthetic.generator import generate
from validation.runner import TICKS, Validator, _base_prices, as_batch


def main(stocks: int = 4, days: int = 2) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-validation-"))
    try:
        root = work / "raw"
        generate(root, stocks, days, 5, dt.date(2024, 3, 4), "hot", 2)
        validator = Validator(work / "gx")
        bases = _base_prices(root)
        frames = []
        for f in sorted(root.glob("ticks/*/*.parquet")):
            df = pq.read_table(f).to_pandas()
            df["day"] = krx.seoul_dates(df["timestamp"])
            frames.append(df.merge(bases, on=["day", "stock_code"], how="left").drop(columns="day"))
        validator.run(TICKS, as_batch(frames[0].head(1000)))  # warm GX
        n = sum(len(df) for df in frames)
        timings = {}
        for label, prepare in (
            ("vicap batch (categorical, consolidated)", as_batch),
            ("baseline: frame as read", None),
        ):
            t0 = time.perf_counter()
            for df in frames:
                validator.run(TICKS, prepare(df) if prepare else df)
            timings[label] = time.perf_counter() - t0
        rows = [
            {"implementation": k, "partitions": len(frames), "rows": n, "seconds": s, "rows_per_s": n / s}
            for k, s in timings.items()
        ]
        fast, slow = timings.values()
        notes = {
            "speedup_vs_frame_as_read": round(slow / fast, 2),
            "seed_scale_minutes_estimated_562M_rows_1_core": round(562e6 / (n / fast) / 60, 1),
        }
        publish("validation", "Great Expectations tick suite throughput", rows, notes)
        return {"rows": rows, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
