from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from market.events.table import write_events
from vicap.settings import DataPaths

BROKERAGE = 0.00015


@pytest.fixture(scope="session")
def built(dataset, tmp_path_factory) -> DataPaths:
    """The session dataset's events, features and labels under a data root of their own."""
    from feature_repo.build import build

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


def copy_repo(target: Path) -> Path:
    """feature_repo's Feast files in ``target``/feature_repo, so that its ../data is ``target``/data."""
    repo = target / "feature_repo"
    repo.mkdir(parents=True)
    source = Path(__file__).resolve().parents[2] / "feature_repo"
    for name in ("feature_store.yaml", "feature_store.redis.yaml", "definitions.py", ".feastignore"):
        shutil.copy(source / name, repo / name)
    return repo
