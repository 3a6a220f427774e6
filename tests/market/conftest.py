"""Fixtures of the market tests: a KIS recording of the session dataset, exported and ingested
once for the tests that read it back (test_kis.py, test_kis_published_frames.py). The exporter
formats about 300,000 frames of three busy stock-days in Python: over half a minute a recording."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

if TYPE_CHECKING:
    import pyarrow as pa

    from market.kis.ingest import KisReport


@dataclass(frozen=True)
class Recorded:
    """The session dataset's busiest day for its three busiest stocks as a KIS recording (``rec``:
    kis-<day>.jsonl.gz with H0STMKO0, vi_status-<day>.json, stocks.csv), the dataset ``ingest_kis``
    wrote from it (``out``), its report and the VIs ``detect`` finds there. Read-only: a test that
    changes the recording copies it first."""

    day: dt.date
    codes: list[str]
    rec: Path
    out: Path
    report: KisReport
    events: pa.Table


@pytest.fixture(scope="session")
def recorded(dataset, tmp_path_factory) -> Recorded:
    from market.events.table import detect, events_table
    from market.kis.export import export_recording
    from market.kis.ingest import ingest_kis

    log = pq.read_table(dataset / "vi_log.parquet").to_pandas()
    day = log.groupby(log.trigger_ts.dt.date).size().idxmax()
    busiest = sorted(log[log.trigger_ts.dt.date == day].stock_code.value_counts().index[:3])
    root = tmp_path_factory.mktemp("kis-recording")
    export_recording(dataset, root / "rec", day, busiest, seed=3)
    report = ingest_kis(root / "rec", root / "out")
    return Recorded(day, busiest, root / "rec", root / "out", report, events_table(detect(root / "out")))
