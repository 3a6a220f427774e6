"""Walk-forward folds, the training-only normaliser, and the dataset as Feast serves it."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.dataset import Normalizer, walk_forward
from training.models import LightGBM


def _days(n: int) -> list[dt.date]:
    return [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(n)]


@given(n=st.integers(3, 80), folds=st.integers(1, 4), purge=st.integers(0, 3))
def test_folds_are_time_ordered_disjoint_and_purged(n, folds, purge):
    try:
        out = walk_forward(_days(n), folds, purge_days=purge)
    except ValueError as exc:
        assert "cannot hold" in str(exc)
        return
    assert len(out) == folds
    for f in out:
        assert f.train and f.validation and f.test
        # every training day before every validation day before every test day
        assert max(f.train) < min(f.validation) and max(f.validation) < min(f.test)
        # no day in two blocks, and the purge gaps hold exactly `purge` days
        assert not (set(f.train) & set(f.validation) or set(f.validation) & set(f.test))
        days = _days(n)
        assert days.index(min(f.validation)) - days.index(max(f.train)) == purge + 1
        assert days.index(min(f.test)) - days.index(max(f.validation)) == purge + 1
    # walk-forward: each fold's test block follows the previous fold's, the last ends with the data
    assert out[-1].test[-1] == _days(n)[-1]
    for a, b in itertools.pairwise(out):
        assert max(a.test) < min(b.test) and len(b.train) > len(a.train)


def test_ten_days_split_about_eight_one_one_with_purge_gaps():
    f = walk_forward(_days(10))[0]
    assert (len(f.train), len(f.validation), len(f.test)) == (6, 1, 1)
    f = walk_forward(_days(10), purge_days=0)[0]
    assert (len(f.train), len(f.validation), len(f.test)) == (8, 1, 1)


def test_the_normaliser_never_sees_validation_or_test_rows(planted_set):
    fold = walk_forward(planted_set.days)[0]
    train, val, test = (planted_set.on_days(d) for d in (fold.train, fold.validation, fold.test))
    # shift the later periods far away: a scaler that saw them would move
    for ds in (val, test):
        ds.frame.loc[:, "noise_0"] += 1_000.0
        ds.sequences[..., 0] += 1_000.0
    model = LightGBM(rounds=5).fit(train, val)
    expected = Normalizer.fit(train)
    assert np.allclose(model.normalizer.mean, expected.mean)
    assert np.allclose(model.normalizer.mean, train.frame[train.tabular].mean().to_numpy())
    assert abs(model.normalizer.mean[train.tabular.index("noise_0")]) < 1.0
    assert abs(model.normalizer.seq_mean[0]) < 1.0
    # and the folds' rows come from their own days only
    assert set(train.frame["day"]) == set(fold.train) and set(test.frame["day"]) == set(fold.test)


def test_a_normaliser_refuses_a_different_feature_list(planted_set):
    norm = Normalizer.fit(planted_set)
    other = type(planted_set)(planted_set.frame, ["noise_0", "signal", "noise_1"], None, [])
    with pytest.raises(ValueError, match="features differ"):
        norm.tabular(other)
    assert Normalizer.from_dict(norm.to_dict()).names == norm.names


def test_the_dataset_is_what_feast_serves_point_in_time(applied):
    """Read through get_historical_features: one row per labelled decision, in time order, the
    tabular values equal to the offline tables' and the sequences to the sequence table's."""
    import pandas as pd

    from feature_repo.definitions import SEQUENCE_SERVICE, SERVICE
    from feature_repo.store import open_store
    from training.dataset import load_dataset, read_labels

    ds = load_dataset(open_store(applied.feast), applied.labels, SERVICE, SEQUENCE_SERVICE)
    labels = read_labels(applied.labels)
    assert len(ds) == len(labels) and len(ds.tabular) == 134
    assert ds.frame["event_timestamp"].is_monotonic_increasing
    assert ds.sequences.shape == (len(ds), 240, 9)
    offline = pd.read_parquet(applied.features / "vi_decision_features.parquet")
    both = ds.frame.merge(offline, on=["event_id", "decision_offset_s"], suffixes=("", "_offline"))
    assert len(both) == len(ds)
    name = "post_ret_dir"
    assert np.allclose(both[name], both[f"{name}_offline"], equal_nan=True)
    seq = pd.read_parquet(applied.features / "vi_sequence.parquet")
    row = ds.frame.iloc[len(ds) // 2]
    match = seq[(seq.event_id == row.event_id) & (seq.decision_offset_s == row.decision_offset_s)].iloc[0]
    assert np.allclose(ds.sequences[len(ds) // 2, :, 0], match["seq_ret"])
