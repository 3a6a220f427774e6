from __future__ import annotations

import pytest

from training.dataset import VIDataset
from training.planted import planted


@pytest.fixture(scope="session")
def planted_set() -> VIDataset:
    return planted()
