from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vicap.settings import DataPaths

if TYPE_CHECKING:
    import pyarrow as pa

# Keep Ray and BentoML quiet and offline in every test process.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# registered models go to a BentoML model store of the test session's own (read when bentoml loads)
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="vicap-test-bentoml-"))


@pytest.fixture
def redis_client():
    """A real Redis (VICAP_REDIS_URL, default 127.0.0.1:6379). Skips with a reason when none is
    reachable, and fails instead when VICAP_REQUIRE_REDIS=1 (as in CI)."""
    import redis

    from vicap.settings import get_settings

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        message = f"no Redis reachable at {settings.redis_url}: {exc}"
        if settings.require_redis:
            pytest.fail(message + " (VICAP_REQUIRE_REDIS=1: the Redis tests must run)")
        pytest.skip(message)
    yield client
    client.close()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data root for a test (VICAP_DATA_DIR)."""
    monkeypatch.setenv("VICAP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


# `edge="high"`: the pipeline tests replay particular events of this market (a VI the closing call
# released, strong continuations); the default edge is tested on a market of its own
SYNTHETIC_ARGS = {
    "stocks": 6,
    "days": 3,
    "seed": 11,
    "start": dt.date(2024, 3, 4),
    "intensity": "hot",
    "edge": "high",
}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A small hot synthetic market, generated once for the whole session (read-only)."""
    from market.synthetic.generator import generate

    out = tmp_path_factory.mktemp("synthetic") / "raw"
    generate(out, jobs=1, **SYNTHETIC_ARGS)
    return out


@pytest.fixture(scope="session")
def dataset_events(dataset) -> pa.Table:
    """The VIs the detector finds in the session dataset from its flags (``events_table``): about
    5 s to replay, shared by the tests that compare against them (read-only)."""
    from market.events.table import detect, events_table

    return events_table(detect(dataset))


BROKERAGE = 0.00015


@pytest.fixture(scope="session")
def built(dataset, tmp_path_factory) -> DataPaths:
    """The session dataset's events, features and labels under a data root of their own."""
    from feature_repo.build import build
    from market.events.table import write_events

    paths = DataPaths(tmp_path_factory.mktemp("features_root"))
    write_events(dataset, paths.events.parent)
    report = build(
        dataset, paths.events, paths.features, paths.labels, paths.reports / "validation", BROKERAGE
    )
    assert report.failed == [] and report.decisions == 10 * report.released > 0
    return paths


@pytest.fixture(scope="session")
def applied(built) -> DataPaths:
    """``built``, registered with Feast and materialized into the embedded SQLite online store."""
    from feature_repo import store
    from vicap.features_cmd import stamped_range

    s = store.open_store(built.feast)
    store.apply(s, built.features)
    start, end = stamped_range(built.features)
    store.materialize(s, start, end + dt.timedelta(seconds=1))
    return built


@dataclass(frozen=True)
class ViDay:
    """A stock-day with a VI in a small generated market (raw: its dataset root)."""

    raw: Path
    code: str
    day: dt.date
    trigger: dt.datetime
    release: dt.datetime


@pytest.fixture(scope="session")
def vi_day(tmp_path_factory) -> ViDay:
    """Three stocks, one hot day (about 10 s to generate): the stock-day with the most VIs and
    its first VI. The KIS client, fake server and recorder tests replay it."""
    import pyarrow.parquet as pq

    from market.synthetic.generator import generate

    raw = tmp_path_factory.mktemp("kis-market") / "raw"
    generate(raw, jobs=1, **(SYNTHETIC_ARGS | {"stocks": 3, "days": 1}))
    log = pq.read_table(raw / "vi_log.parquet").to_pandas()
    code, day = log.groupby([log.stock_code, log.trigger_ts.dt.date]).size().idxmax()
    first = log[(log.stock_code == code) & (log.trigger_ts.dt.date == day)].sort_values("trigger_ts").iloc[0]
    return ViDay(raw, code, day, first.trigger_ts.to_pydatetime(), first.release_ts.to_pydatetime())


@pytest.fixture(scope="session")
def vi_window(vi_day) -> tuple[dt.time, dt.time]:
    """A minute before ``vi_day``'s VI to a minute after its release (about four minutes)."""
    return (vi_day.trigger - dt.timedelta(minutes=1)).time(), (
        vi_day.release + dt.timedelta(minutes=1)
    ).time()


@pytest.fixture(scope="session")
def vi_feed(vi_day, vi_window):
    """The KIS feed of ``vi_day``'s stock over ``vi_window`` (built once: it reads the whole day)."""
    from market.kis.export import build_feed

    return build_feed(vi_day.raw, vi_day.day, [vi_day.code], *vi_window)
