"""Feature store speed: the offline build (decision rows per second) beside a per-event build (each
panel its own query, as the live path does it); and the online fetch of one decision's feature
service, p50/p99, from SQLite and Redis, beside Feast's ``get_online_features`` of the service and
of each view in turn (the naive way), all measured in the same run."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import publish
from feature_repo import features as F
from feature_repo import store as S
from feature_repo.build import build, iter_event_infos
from feature_repo.definitions import SERVICE
from market.events.panels import panels_from_ticks
from market.events.table import load_stock_days, write_events
from market.synthetic.generator import generate
from vicap.settings import DataPaths, get_settings

BROKERAGE = 0.00015


def per_event_build(root: Path, events_path: Path) -> int:
    """The baseline: each event's panel from its stock-day file in its own query, then the same features."""
    events = pq.read_table(events_path)
    decisions = 0
    for ev, info in iter_event_infos(events, load_stock_days(root / "instruments.parquet")):
        if ev["release_ts"] is None:
            continue
        ticks = pq.read_table(root / "ticks" / f"date={info.day}" / f"{info.stock_code}.parquet")
        one = events.filter(pc.equal(events["event_id"], info.event_id))
        panel = F.panel_arrays(panels_from_ticks(ticks, one, F.PANEL_BEFORE_S, F.MAX_DECISION_OFFSET))
        panel = panel[info.event_id]
        F.event_row(panel, info)
        for k in F.DECISION_OFFSETS:
            F.decision_row(panel, info, k)
            F.sequence_row(panel, info, k)
            decisions += 1
    return decisions


def _percentiles(fetch, keys: list[tuple], rounds: int) -> tuple[float, float]:
    for key in keys[:50]:
        fetch(key)  # warm: registry load, connections
    lat = []
    for i in range(rounds):
        t = time.perf_counter()
        fetch(keys[i % len(keys)])
        lat.append(time.perf_counter() - t)
    return float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)


def online_rows(fs, keys: list[tuple], label: str, rounds: int) -> list[dict]:
    service = fs.get_feature_service(SERVICE)
    reader = S.DecisionReader(fs, SERVICE)
    refs = [[f"{p.name}:{f.name}" for f in p.features] for p in service.feature_view_projections]

    def feast_service(key):
        fs.get_online_features(features=service, entity_rows=[S.decision_entity(*key)]).to_dict()

    def feast_per_view(key):
        for names in refs:
            fs.get_online_features(features=names, entity_rows=[S.decision_entity(*key)]).to_dict()

    rows = []
    for name, fetch in (
        ("DecisionReader (vicap)", lambda key: reader.read(*key)),
        ("get_online_features(service)", feast_service),
        ("get_online_features per view (naive)", feast_per_view),
    ):
        p50, p99 = _percentiles(fetch, keys, rounds)
        rows.append({"online store": label, "fetch": name, "p50 ms": p50, "p99 ms": p99})
    return rows


def main(stocks: int = 10, days: int = 4, rounds: int = 2000) -> dict:
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-features-"))
    try:
        root = work / "raw"
        generate(root, stocks, days, 23, dt.date(2024, 3, 4), "hot", 2)
        paths = DataPaths(work / "data")
        write_events(root, paths.events.parent)
        t0 = time.perf_counter()
        report = build(
            root, paths.events, paths.features, paths.labels, work / "reports", BROKERAGE, validate=False
        )
        batch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        baseline_n = per_event_build(root, paths.events)
        baseline_s = time.perf_counter() - t0
        build_rows = [
            {"build": "batch (one DuckDB query, + context, labels)", "decisions": report.decisions,
             "seconds": batch_s, "decisions/s": report.decisions / batch_s},
            {"build": "per event (one query each, features only)", "decisions": baseline_n,
             "seconds": baseline_s, "decisions/s": baseline_n / baseline_s},
        ]  # fmt: skip
        publish(
            "features_build",
            f"Offline feature build ({report.released} VIs, {stocks} stocks x {days} days, hot)",
            build_rows,
            {"speedup_vs_per_event": round(build_rows[0]["decisions/s"] / build_rows[1]["decisions/s"], 2)},
        )
        decisions = pq.read_table(paths.features / "vi_decision_features.parquet").to_pylist()
        keys = [(r["event_id"], r["decision_offset_s"], r["stock_code"]) for r in decisions]
        start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(2024, 12, 31, tzinfo=dt.UTC)
        online = []
        fs = S.open_store(paths.feast)
        S.apply(fs, paths.features)
        S.materialize(fs, start, end)
        online += online_rows(fs, keys, "sqlite", rounds)
        redis_url = get_settings().redis_url
        try:
            rs = S.open_store(work / "feast_redis", redis_url, project=f"vicap_bench_{uuid.uuid4().hex[:8]}")
            S.apply(rs, paths.features)
            S.materialize(rs, start, end)
            online += online_rows(rs, keys, "redis", rounds)
            rs.teardown()
        except Exception as exc:
            print(f"no Redis figures: {exc}")
        publish(
            "features_online",
            f"Online fetch of one decision ({SERVICE}: {len(reader_names(fs))} features), in-process",
            online,
            {"target": "p99 < 2 ms"},
        )
        return {"build": build_rows, "online": online}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def reader_names(fs) -> list[str]:
    return [f.name for p in fs.get_feature_service(SERVICE).feature_view_projections for f in p.features]


if __name__ == "__main__":
    main()
