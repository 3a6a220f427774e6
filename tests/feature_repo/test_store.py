"""The Feast store: plain `feast` commands, point-in-time training sets, and no training/serving
skew: a stock-day replayed through the live path and pushed online reads back equal to the
offline rows (SQLite, and Redis for real)."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_repo import store as S
from feature_repo.build import events_as_dicts
from feature_repo.definitions import SEQUENCE_SERVICE, SERVICE
from feature_repo.features import SEQUENCE_CHANNELS, SEQUENCE_LENGTH
from feature_repo.live import LiveFeaturePath
from market import krx
from market.events.table import load_stock_days
from tests.feature_repo.conftest import copy_repo

FEAST = str(Path(sys.executable).parent / "feast")


def _feast(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VICAP_")}
    done = subprocess.run([FEAST, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"feast {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def test_plain_feast_apply_list_and_materialize_in_the_repo(built, tmp_path):
    repo = copy_repo(tmp_path)
    shutil.copytree(built.features, tmp_path / "data" / "features")
    out = _feast(repo, "apply")
    assert (
        "Created feature service vi_rebound_v1" in out and "Created sqlite table vicap_vi_post_release" in out
    )
    listed = _feast(repo, "feature-views", "list")
    for view in (
        "vi_pre_trigger",
        "vi_at_trigger",
        "vi_auction",
        "vi_post_release",
        "vi_sequence",
        "stock_context",
    ):
        assert view in listed
    _feast(repo, "materialize", "2024-02-01T00:00:00", "2024-04-01T00:00:00")
    from feast import FeatureStore

    fs = FeatureStore(repo_path=str(repo))
    decision = pq.read_table(tmp_path / "data" / "features" / "vi_decision_features.parquet").slice(0, 1)
    row = decision.to_pylist()[0]
    got = fs.get_online_features(
        features=fs.get_feature_service(SERVICE),
        entity_rows=[S.decision_entity(row["event_id"], row["decision_offset_s"], row["stock_code"])],
    ).to_dict()
    assert got["post_ret"][0] == pytest.approx(row["post_ret"], abs=1e-12)
    assert got["trig_direction"][0] in (-1.0, 1.0) and got["ctx_tick_size"][0] >= 1


def test_training_sets_are_point_in_time(applied):
    fs = S.open_store(applied.feast)
    labels = pq.read_table(applied.labels / "labels.parquet").to_pandas()
    rows = S.historical(fs, labels, SERVICE)
    assert len(rows) == len(labels)
    offline = pq.read_table(applied.features / "vi_decision_features.parquet").to_pandas()
    merged = rows.merge(offline, on=["event_id", "decision_offset_s"], suffixes=("", "_offline"))
    assert (
        len(merged) == len(labels) and (merged["post_ret"] - merged["post_ret_offline"]).abs().max() < 1e-12
    )
    assert rows["trig_direction"].notna().all() and rows["ctx_prev_close_log"].notna().all()
    # asked before the release, nothing of the VI is known yet; context is that of the session
    early = labels.head(5).assign(event_timestamp=lambda d: d["event_timestamp"] - pd.Timedelta(minutes=10))
    before = S.historical(fs, early, SERVICE)
    assert before["auc_duration_s"].isna().all() and before["post_ret"].isna().all()
    assert before["ctx_prev_close_log"].notna().all()


def _replay(dataset: Path, applied, code: str, day: dt.date) -> list:
    """One stock-day replayed row by row through the live feature path; the other stocks' VIs
    arrive as the exchange's VI notices at their trigger times."""
    events = events_as_dicts(pq.read_table(applied.events))
    ticks = pq.read_table(dataset / "ticks" / f"date={day}" / f"{code}.parquet")
    notices = sorted((e["trigger_ts"], e["stock_code"]) for e in events if e["stock_code"] != code)
    live = LiveFeaturePath(load_stock_days(dataset / "instruments.parquet"))
    stamps = ticks["timestamp"].cast(pa.int64()).to_pylist()
    out, n = [], 0
    for ts, row in zip(stamps, ticks.to_pylist(), strict=True):
        while n < len(notices) and notices[n][0] <= ts:
            live.on_vi_notice(notices[n][1], notices[n][0])
            n += 1
        out += live.on_tick(row)
    out += live.flush(stamps[-1] + 60_000_000)
    return out


def test_the_live_service_serves_only_what_the_live_feed_supplies(applied):
    """vi_rebound_live_v1: vi_rebound_v1 without investor nets and news or disclosure flags
    (the KIS real-time feed has none), for models meant to trade live."""
    from feature_repo.context import STOCK_CONTEXT
    from feature_repo.definitions import LIVE_SERVICE
    from feature_repo.features import DECISION_FEATURES, EVENT_FEATURES

    fs = S.open_store(applied.feast)
    served = {
        f.name for p in fs.get_feature_service(LIVE_SERVICE).feature_view_projections for f in p.features
    }
    every = EVENT_FEATURES + DECISION_FEATURES + STOCK_CONTEXT
    lacking = {f.name for f in every if not f.live}
    assert served == {f.name for f in every} - lacking and len(lacking) == 13
    assert {"pre_foreign_change", "post_news", "auc_disclosure"} <= lacking
    labels = pq.read_table(applied.labels / "labels.parquet").to_pandas().head(20)
    rows = S.historical(fs, labels, LIVE_SERVICE)
    assert served <= set(rows.columns) and not lacking & set(rows.columns)
    assert rows["post_ret"].notna().all()


@pytest.fixture(scope="module")
def replayed(dataset, applied) -> list:
    """The stock-day with the most VIs, replayed through the live feature path."""
    events = events_as_dicts(pq.read_table(applied.events))
    by_stock_day = pd.Series(
        [(e["stock_code"], krx.seoul_date(e["trigger_ts"])) for e in events]
    ).value_counts()
    code, day = by_stock_day.index[0]
    out = _replay(dataset, applied, code, day)
    assert sum(len(r.decisions) for r in out) == 10 * by_stock_day.iloc[0]
    return out


def test_the_live_buffer_holds_a_running_vis_rows_however_long_its_auction(dataset, applied, monkeypatch):
    """A buffer shorter than any auction and its look-back together, trimmed every 200 rows: the live
    features of the busiest stock-day still equal the offline tables, because a running VI's
    rows are kept back to before its trigger (as an auction merging into the close needs)."""
    import feature_repo.live as L

    monkeypatch.setattr(L, "BUFFER_S", L.PANEL_BEFORE_S + 10)  # shorter than look-back + auction
    monkeypatch.setattr(L, "CHUNK_ROWS", 200)
    events = events_as_dicts(pq.read_table(applied.events))
    code, day = (
        pd.Series([(e["stock_code"], krx.seoul_date(e["trigger_ts"])) for e in events])
        .value_counts()
        .index[0]
    )
    rows = _replay(dataset, applied, code, day)
    offline_events = (
        pq.read_table(applied.features / "vi_event_features.parquet").to_pandas().set_index("event_id")
    )
    offline_decisions = pq.read_table(applied.features / "vi_decision_features.parquet").to_pandas()
    offline_decisions = offline_decisions.set_index(["event_id", "decision_offset_s"])
    compared = 0
    for r in rows:
        for name, value in r.event.items():
            want = offline_events.loc[r.info.event_id, name]
            assert _equal(value, want) or abs(value - want) <= 1e-9, (r.info.event_id, name, value, want)
            compared += 1
        for k, decision in r.decisions.items():
            for name, value in decision.items():
                want = offline_decisions.loc[(r.info.event_id, k), name]
                assert _equal(value, want) or abs(value - want) <= 1e-9, (r.info.event_id, k, name)
                compared += 1
    assert len(rows) >= 2 and compared > 100


def test_a_vi_the_closing_call_released_sees_the_same_context_offline_and_online(dataset, applied, tmp_path):
    """A live day loads its stock context before the open. A VI that the closing call released
    is decided after 15:30: offline it must get the session's own context too, not the next
    session's (which holds this day's close)."""
    events = events_as_dicts(pq.read_table(applied.events))
    late = [e for e in events if krx.from_us(e["release_ts"]).time() >= dt.time(15, 30)]
    assert late, "the session dataset has a VI that the closing call released"
    vi = late[0]
    code, day = vi["stock_code"], krx.seoul_date(vi["trigger_ts"])
    rows = [r for r in _replay(dataset, applied, code, day) if r.info.event_id == vi["event_id"]]
    fs = S.open_store(tmp_path / "feast")
    S.apply(fs, applied.features)
    for r in rows:
        S.push_online(fs, r)
    opening = krx.session_schedule(day).opening_auction_start
    fs.materialize(opening - dt.timedelta(days=10), opening + dt.timedelta(seconds=1), ["stock_context"])
    keys = [
        {**S.decision_entity(r.info.event_id, k, code), "release_ts": r.info.release_ts}
        for r in rows
        for k in r.decisions
    ]
    entity_df = pd.DataFrame(keys)
    entity_df["event_timestamp"] = [pd.Timestamp(t, unit="us", tz="UTC") for t in _decision_times(entity_df)]
    offline = S.historical(S.open_store(applied.feast), entity_df, SERVICE)
    online = fs.get_online_features(
        features=fs.get_feature_service(SERVICE),
        entity_rows=[{k: e[k] for k in ("event_id", "decision_offset_s", "stock_code")} for e in keys],
    ).to_df()
    context = [c for c in online.columns if c.startswith("ctx_")]
    assert len(online) == 10 and len(context) > 10
    want = (
        offline.set_index("decision_offset_s")
        .loc[online["decision_offset_s"], context]
        .reset_index(drop=True)
    )
    for name in context:
        for got, expected in zip(online[name], want[name], strict=True):
            assert _equal(got, expected) or abs(got - expected) <= 1e-9, (name, got, expected)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_live_rows_pushed_online_equal_the_offline_rows(kind, applied, replayed, tmp_path, request):
    redis_url = None
    if kind == "redis":
        request.getfixturevalue("redis_client")  # skips, or fails under VICAP_REQUIRE_REDIS=1, without Redis
        from vicap.settings import get_settings

        redis_url = get_settings().redis_url
    # Redis under a project of its own: the test must not touch a real store's keys
    project = f"vicap_test_{uuid.uuid4().hex[:8]}" if redis_url else None
    fs = S.open_store(tmp_path / "feast", redis_url or "sqlite", project=project)
    try:
        S.apply(fs, applied.features)
        for rows in replayed:
            S.push_online(fs, rows)
        offline_fs = S.open_store(applied.feast)
        keys = [
            {**S.decision_entity(r.info.event_id, k, r.info.stock_code), "release_ts": r.info.release_ts}
            for r in replayed
            for k in r.decisions
        ]
        entity_df = pd.DataFrame(keys)
        entity_df["event_timestamp"] = [
            pd.Timestamp(t, unit="us", tz="UTC") for t in _decision_times(entity_df)
        ]
        offline = S.historical(offline_fs, entity_df, SERVICE).set_index(["event_id", "decision_offset_s"])
        # the stock's context as of the replayed day's session, as a live day would have loaded it
        last = entity_df["event_timestamp"].max()
        fs.materialize(last - dt.timedelta(days=10), last.to_pydatetime(), feature_views=["stock_context"])
        online = fs.get_online_features(
            features=fs.get_feature_service(SERVICE),
            entity_rows=[{k: e[k] for k in ("event_id", "decision_offset_s", "stock_code")} for e in keys],
        ).to_df()
        reader = S.DecisionReader(fs, SERVICE)
        compared = 0
        for _, got in online.iterrows():
            fast = reader.read(got["event_id"], int(got["decision_offset_s"]), got["stock_code"])
            assert all(_equal(fast[n], got[n]) for n in fast), (
                "DecisionReader differs from get_online_features"
            )
            want = offline.loc[(got["event_id"], got["decision_offset_s"])]
            for name, value in got.items():
                if name in ("event_id", "decision_offset_s", "stock_code"):
                    continue
                expected = want[name]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    assert expected is None or math.isnan(expected), (
                        f"{name}: online null, offline {expected}"
                    )
                else:
                    assert abs(value - expected) <= 1e-6, f"{got['event_id']} {name}: {value} vs {expected}"
                compared += 1
        assert compared == len(keys) * (len(online.columns) - 3) and len(online.columns) > 120
        # the sequence view: the live arrays read back equal the offline table's
        sequences = pq.read_table(applied.features / "vi_sequence.parquet").to_pandas()
        sequences = sequences.set_index(["event_id", "decision_offset_s"])
        sequence_reader = S.DecisionReader(fs, SEQUENCE_SERVICE)
        for e in keys[:: max(len(keys) // 5, 1)]:
            got = sequence_reader.read(e["event_id"], e["decision_offset_s"], e["stock_code"])
            want = sequences.loc[(e["event_id"], e["decision_offset_s"])]
            for channel in SEQUENCE_CHANNELS:
                assert len(got[channel]) == SEQUENCE_LENGTH
                assert np.abs(np.asarray(got[channel]) - want[channel]).max() <= 1e-6
    finally:
        if kind == "redis":
            fs.teardown()


def _equal(a, b) -> bool:
    missing = [x is None or (isinstance(x, float) and math.isnan(x)) for x in (a, b)]
    return all(missing) if any(missing) else a == b


def _decision_times(entity_df: pd.DataFrame) -> list[int]:
    from feature_repo.features import decision_time_us

    return [
        decision_time_us(r, k)
        for r, k in zip(entity_df["release_ts"], entity_df["decision_offset_s"], strict=True)
    ]
