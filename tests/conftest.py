from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

# Keep Ray and BentoML quiet and offline in every test process.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


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
