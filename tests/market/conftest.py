from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from market.synthetic import generate

SYNTHETIC_ARGS = {"stocks": 6, "days": 3, "seed": 11, "start": dt.date(2024, 3, 4), "intensity": "hot"}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A small hot synthetic market, generated once for the whole session (read-only)."""
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    generate(out, jobs=1, **SYNTHETIC_ARGS)
    return out
