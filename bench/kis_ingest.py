"""KIS recording ingest speed (records per second): today's ingest (Arrow, a tr_id at a time,
then each stock's feed state) beside the loop it replaced (``bench/kis_loop.py``), on the same
recording in the same run, and a check that both wrote the same ticks."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench import kis_loop
from bench.common import publish
from market import krx
from market.kis.export import export_recording
from market.kis.ingest import ingest_kis
from market.synthetic.generator import generate

COMPARED = [
    "timestamp",
    "stock_code",
    "event_type",
    "price",
    "volume",
    "cum_volume",
    "vi_status",
    "bid_price_1",
]


def _ticks(root: Path) -> dict[str, object]:
    return {p.name: pq.read_table(p, columns=COMPARED) for p in sorted(root.glob("ticks/*/*.parquet"))}


def main(stocks: int = 6) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-kis-"))
    try:
        day = dt.date(2024, 3, 4)
        generate(work / "raw", stocks, 1, 5, day, "hot", 2)
        counts = export_recording(work / "raw", work / "rec", day, seed=1)
        krx.session_labels_by_day(np.array([krx.at_seoul(day, dt.time(9))]))  # the calendar, built once
        rows = []
        for label, ingest in (
            ("vicap (Arrow per tr_id, feed state)", ingest_kis),
            ("baseline: the loop", kis_loop.ingest_kis),
        ):
            out = work / label.split(" ")[0].strip(":")
            t0 = time.perf_counter()
            report = ingest(work / "rec", out)
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "implementation": label,
                    "lines": report.lines,
                    "records": report.records,
                    "seconds": seconds,
                    "records_per_s": report.records / seconds,
                }
            )
        same = _ticks(work / "vicap") == _ticks(work / "baseline")
        notes = {
            "speedup_vs_loop": round(rows[0]["records_per_s"] / rows[1]["records_per_s"], 1),
            "same_ticks_written": same,
            "recording": f"{stocks} stocks, 1 hot day, {counts['lines']:,} lines",
        }
        publish("kis_ingest", "KIS recording ingest: records per second", rows, notes)
        return {"rows": rows, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
