from __future__ import annotations

import shutil
from pathlib import Path


def copy_repo(target: Path) -> Path:
    """feature_repo's Feast files in ``target``/feature_repo, so that its ../data is ``target``/data."""
    repo = target / "feature_repo"
    repo.mkdir(parents=True)
    source = Path(__file__).resolve().parents[2] / "feature_repo"
    for name in ("feature_store.yaml", "feature_store.redis.yaml", "definitions.py", ".feastignore"):
        shutil.copy(source / name, repo / name)
    return repo
