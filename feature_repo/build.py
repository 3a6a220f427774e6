"""The batch feature builder: events + ticks -> the offline tables Feast reads, and the labels.

Writes under the data root:
- ``features/vi_event_features.parquet``: one row per released VI, stamped at its release;
- ``features/vi_decision_features.parquet``: one row per (VI, decision offset 0..9), stamped at the
  decision time;
- ``features/vi_sequence.parquet``: the same keys, the per-second panel as fixed-length arrays;
- ``features/stock_context.parquet``: one row per (stock, session), stamped at the session's opening call;
- ``labels/labels.parquet``: the labels of every decision (``feature_repo.labels``).
Timestamps are microseconds (Feast over DuckDB fails on nanoseconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from feature_repo import context, features, labels
from feature_repo.features import DECISION_OFFSETS, EventInfo, VIHistory
from market import krx
from market.events.panels import build_panels
from market.events.table import load_stock_days, log_tolerance_s, match_log
from market.krx.schema import TIMESTAMP

EVENT_TABLE, DECISION_TABLE, SEQUENCE_TABLE, CONTEXT_TABLE = (
    "vi_event_features",
    "vi_decision_features",
    "vi_sequence",
    "stock_context",
)
FEAST_TABLES = (EVENT_TABLE, DECISION_TABLE, SEQUENCE_TABLE, CONTEXT_TABLE)  # the sources of the views
LABEL_TABLE = "labels"


@dataclass(frozen=True)
class FeatureRows:
    """The rows one released VI contributes (the batch builder and the live path both make these)."""

    info: EventInfo
    event: dict[str, float]
    decisions: dict[int, dict[str, float]]
    sequences: dict[int, dict[str, np.ndarray]]


def event_feature_rows(
    panel: dict[str, np.ndarray], info: EventInfo, offsets=DECISION_OFFSETS
) -> FeatureRows:
    return FeatureRows(
        info,
        features.event_row(panel, info),
        {k: features.decision_row(panel, info, k) for k in offsets},
        {k: features.sequence_row(panel, info, k) for k in offsets},
    )


def _ts(values_us: list[int]) -> pa.Array:
    return pa.array(values_us, pa.int64()).cast(pa.timestamp("us")).cast(TIMESTAMP)


def _floats(rows: list[dict[str, float]], specs: list[features.Feature]) -> dict[str, pa.Array]:
    # NaN (undefined: no book, nothing published) is stored as null
    return {
        f.name: pa.array(np.array([r[f.name] for r in rows], dtype=np.float64), from_pandas=True)
        for f in specs
    }


def event_table(built: list[FeatureRows]) -> pa.Table:
    return pa.table(
        {
            "event_id": [b.info.event_id for b in built],
            "stock_code": [b.info.stock_code for b in built],
            "event_timestamp": _ts([b.info.release_ts for b in built]),
            **_floats([b.event for b in built], features.EVENT_FEATURES),
        }
    )


def _decision_keys(built: list[FeatureRows], offsets: list[list[int]]) -> dict[str, pa.Array]:
    pairs = [(b.info, k) for b, ks in zip(built, offsets, strict=True) for k in ks]
    return {
        "event_id": pa.array([i.event_id for i, _ in pairs]),
        "decision_offset_s": pa.array([k for _, k in pairs], pa.int64()),
        "stock_code": pa.array([i.stock_code for i, _ in pairs]),
        "event_timestamp": _ts([features.decision_time_us(i.release_ts, k) for i, k in pairs]),
    }


def decision_table(built: list[FeatureRows]) -> pa.Table:
    offsets = [sorted(b.decisions) for b in built]
    rows = [b.decisions[k] for b, ks in zip(built, offsets, strict=True) for k in ks]
    return pa.table({**_decision_keys(built, offsets), **_floats(rows, features.DECISION_FEATURES)})


def sequence_table(built: list[FeatureRows]) -> pa.Table:
    offsets = [sorted(b.sequences) for b in built]
    rows = [b.sequences[k] for b, ks in zip(built, offsets, strict=True) for k in ks]
    channels = {
        name: pa.array([r[name] for r in rows], pa.list_(pa.float32())) for name in features.SEQUENCE_CHANNELS
    }
    return pa.table({**_decision_keys(built, offsets), **channels})


def iter_event_infos(events: pa.Table, stock_days: dict) -> Iterator[tuple[dict, EventInfo]]:
    """Every event with what it may know of the VIs before it."""
    history = VIHistory()
    rows = events_as_dicts(events)
    days = [krx.seoul_date(ev["trigger_ts"]) for ev in rows]
    for ev, day in zip(rows, days, strict=True):
        history.add(ev["stock_code"], day, ev["trigger_ts"], ev["release_ts"])
    for ev, day in zip(rows, days, strict=True):
        yield ev, history.info(ev, stock_days[(ev["stock_code"], day)])


def events_as_dicts(events: pa.Table) -> list[dict]:
    """events.parquet rows with their timestamps as µs since the epoch."""
    ts_cols = {c: events[c].cast(pa.int64()).to_pylist() for c in ("trigger_ts", "release_ts")}
    rows = events.drop_columns(list(ts_cols)).to_pylist()
    return [r | {c: v[i] for c, v in ts_cols.items()} for i, r in enumerate(rows)]


@dataclass
class BuildReport:
    events: int
    released: int
    decisions: int
    context_rows: int
    labels: int
    failed: list[str]
    docs: Path | None


def decisions_frame(built: list[FeatureRows]) -> pd.DataFrame:
    offsets = [sorted(b.decisions) for b in built]
    keys = pa.table(_decision_keys(built, offsets)).to_pandas()
    by_id = {b.info.event_id: b.info for b in built}
    keys["direction"] = keys["event_id"].map(lambda e: by_id[e].direction)
    keys["market"] = keys["event_id"].map(lambda e: by_id[e].market)
    keys["day"] = keys["event_id"].map(lambda e: by_id[e].day)
    keys["release_price"] = keys["event_id"].map(lambda e: features.release_price(by_id[e]))
    return keys


def build(
    dataset: Path,
    events_path: Path,
    features_dir: Path,
    labels_dir: Path,
    reports_dir: Path,
    brokerage_rate: float,
    validate: bool = True,
) -> BuildReport:
    events = pq.read_table(events_path)
    stock_days = load_stock_days(dataset / "instruments.parquet")
    released = events.filter(events["release_ts"].is_valid())
    panels = build_panels(dataset, released, features.PANEL_BEFORE_S, features.MAX_DECISION_OFFSET)
    arrays = features.panel_arrays(panels)
    built: list[FeatureRows] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("computing features", total=events.num_rows)
        for ev, info in iter_event_infos(events, stock_days):
            if ev["release_ts"] is not None:
                built.append(event_feature_rows(arrays[ev["event_id"]], info))
            progress.advance(task)
    features_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        EVENT_TABLE: event_table(built),
        DECISION_TABLE: decision_table(built),
        SEQUENCE_TABLE: sequence_table(built),
    }
    ctx = context.context_table(dataset, pq.read_table(dataset / "instruments.parquet"), events)
    ctx["event_timestamp"] = (
        pd.to_datetime(ctx["event_timestamp"])
        .dt.tz_convert("Asia/Seoul")
        .astype("datetime64[us, Asia/Seoul]")
    )
    tables[CONTEXT_TABLE] = pa.Table.from_pandas(ctx, preserve_index=False)
    for name, table in tables.items():  # tables holds FEAST_TABLES
        pq.write_table(table, features_dir / f"{name}.parquet")
    causes, drifts = _ground_truth(dataset, events)
    label_table = labels.build_labels(dataset, decisions_frame(built), causes, brokerage_rate, drifts)
    pq.write_table(label_table, labels_dir / f"{LABEL_TABLE}.parquet")
    failed: list[str] = []
    docs = None
    if validate:
        from feature_repo.checks import validate_features

        failed, docs = validate_features(tables | {LABEL_TABLE: label_table}, reports_dir)
    return BuildReport(
        events.num_rows,
        released.num_rows,
        tables[DECISION_TABLE].num_rows,
        len(ctx),
        label_table.num_rows,
        failed,
        docs,
    )


def _ground_truth(dataset: Path, events: pa.Table) -> tuple[dict[str, str | None], dict[str, float]]:
    """Each event's cause and latent drift from the VI log, where it carries them (synthetic data)."""
    log_path = dataset / "vi_log.parquet"
    if not log_path.exists():
        return {}, {}
    log = pq.read_table(log_path)
    if "cause" not in log.column_names:
        return {}, {}
    matches = match_log(events, log, log_tolerance_s(dataset))
    # a logged VI without a cause rose from ordinary flow: "none" (known), unlike an unmatched VI (null)
    causes = {e: r["cause"] or "none" for e, r in matches.items()}
    drifts = {e: r["latent_drift"] for e, r in matches.items() if r.get("latent_drift") is not None}
    return causes, drifts
