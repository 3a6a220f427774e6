"""Training data from the Feast store: point-in-time features of each decision joined to its labels,
walk-forward folds by trading date, and the normaliser fitted on a fold's training rows only.

A dataset is read through ``get_historical_features`` of the feature services (the tabular
``vi_rebound_v1`` or its live twin, and ``vi_sequence_v1`` for sequence models), so a model sees
exactly what the online store serves it later. The targets:
- ``continuation_net_{h}s`` / ``rebound_net_{h}s``: a trade with (against) the VI beat the round-trip cost;
- ``ret_dir_{h}s``: the return in the VI's direction (추세 방향 수익률);
- ``best_entry_s``: the decision second 0-9 with the best entry price for a continuation trade;
- ``cause``: news / disclosure / program / panic / none where the VI log knows it (synthetic), else -1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.build import LABEL_TABLE
from feature_repo.features import SEQUENCE_CHANNELS
from feature_repo.labels import HORIZONS_S

CAUSES = ("news", "disclosure", "program", "panic", "none")
ENTRY_SECONDS = 10
KEYS = ["event_id", "decision_offset_s", "stock_code", "event_timestamp"]
MASK_CHANNEL = "seq_mask"


def binary_targets(kind: str = "continuation") -> list[str]:
    return [f"{kind}_net_{h}s" for h in HORIZONS_S]


def feature_list_hash(names: list[str]) -> str:
    """What a model was trained on, in order: loading it against a store whose service lists other
    features must fail."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VIDataset:
    """Decisions in time order: keys, labels and targets in ``frame``, tabular features named by
    ``tabular`` (columns of ``frame``), sequences (rows, seconds, channels) aligned with its rows."""

    frame: pd.DataFrame
    tabular: list[str]
    sequences: np.ndarray | None
    channels: list[str]

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def days(self) -> list[dt.date]:
        return sorted(set(self.frame["day"]))

    def on_days(self, days: tuple[dt.date, ...] | list[dt.date]) -> VIDataset:
        mask = self.frame["day"].isin(set(days)).to_numpy()
        seq = None if self.sequences is None else self.sequences[mask]
        return VIDataset(self.frame.loc[mask].reset_index(drop=True), self.tabular, seq, self.channels)

    def targets(self) -> dict[str, np.ndarray]:
        f = self.frame
        return {
            "continuation": f[binary_targets("continuation")].to_numpy(dtype=np.float32),
            "rebound": f[binary_targets("rebound")].to_numpy(dtype=np.float32),
            "ret_dir": f[[f"ret_dir_{h}s" for h in HORIZONS_S]].to_numpy(dtype=np.float32),
            "entry": f["best_entry_s"].to_numpy(dtype=np.int64),
            "cause": f["cause_index"].to_numpy(dtype=np.int64),
        }


def add_targets(labels: pd.DataFrame) -> pd.DataFrame:
    out = labels.copy()
    for h in HORIZONS_S:
        out[f"ret_dir_{h}s"] = out["direction"].astype(float) * out[f"ret_{h}s"].astype(float)
    index = {c: i for i, c in enumerate(CAUSES)}
    out["cause_index"] = out["cause"].map(index).fillna(-1).astype(np.int64)
    return out


def read_labels(labels_dir: Path) -> pd.DataFrame:
    path = Path(labels_dir) / f"{LABEL_TABLE}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no label table (run `vicap features build` first)")
    return add_targets(pd.read_parquet(path))


def load_dataset(store, labels_dir: Path, service: str, sequence_service: str | None = None) -> VIDataset:
    """Every labelled decision with its point-in-time features from ``store`` (an applied Feast store)."""
    from feature_repo.store import historical

    labels = read_labels(labels_dir)
    entity = labels[KEYS].copy()
    names = [f"{p.name}__{f.name}" for p in _projections(store, service) for f in p.features]
    tab = historical(store, entity, service)
    tabular = [n.split("__", 1)[1] for n in names]
    tab = tab.rename(columns={n: n.split("__", 1)[1] for n in tab.columns if "__" in n})
    on = ["event_id", "decision_offset_s"]
    frame = labels.merge(tab[[*on, *tabular]], on=on)
    frame = frame.sort_values(["event_timestamp", "event_id", "decision_offset_s"]).reset_index(drop=True)
    frame[tabular] = frame[tabular].astype(float)
    sequences, channels = None, []
    if sequence_service:
        seq = historical(store, entity, sequence_service)
        channels = list(SEQUENCE_CHANNELS)
        seq = frame[on].merge(seq, on=on, how="left")
        sequences = np.stack([np.stack(seq[c].to_numpy()) for c in channels], axis=-1).astype(np.float32)
    return VIDataset(frame, tabular, sequences, channels)


def _projections(store, service: str):
    return store.get_feature_service(service).feature_view_projections


@dataclass(frozen=True)
class Fold:
    """Trading days of one walk-forward fold; ``purge_days`` days left out between the blocks."""

    train: tuple[dt.date, ...]
    validation: tuple[dt.date, ...]
    test: tuple[dt.date, ...]


def walk_forward(
    days: list[dt.date], folds: int = 1, ratios: tuple[int, int, int] = (8, 1, 1), purge_days: int = 1
) -> list[Fold]:
    """Expanding-window folds by trading date, oldest first; the last fold's test block ends with
    the data and each earlier fold's ends where the next one's begins. Between train and
    validation and between validation and test, ``purge_days`` days are left out: a VI's story
    (news, a program that persists, the stock's context) can run into the next session, so
    adjacent days are not independent samples."""
    days = sorted(set(days))
    usable = len(days) - 2 * purge_days
    total = sum(ratios)
    val_n = max(1, round(usable * ratios[1] / total))
    test_n = max(1, round(usable * ratios[2] / total))
    out = []
    for i in range(folds):
        end = len(days) - i * test_n
        val_end = end - test_n - purge_days
        train_end = val_end - val_n - purge_days
        if train_end < 1:
            raise ValueError(
                f"{len(days)} trading days cannot hold {folds} fold(s) of {val_n} validation and "
                f"{test_n} test day(s) with {purge_days}-day purge gaps: fewer folds, a smaller "
                "purge, or more data"
            )
        out.append(
            Fold(
                tuple(days[:train_end]),
                tuple(days[val_end - val_n : val_end]),
                tuple(days[end - test_n : end]),
            )
        )
    return out[::-1]


@dataclass(frozen=True)
class Normalizer:
    """Per-column standardisation fitted on training rows only (missing values become the training
    mean, i.e. 0 after scaling); sequence channels are scaled over their unpadded seconds."""

    names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    seq_mean: np.ndarray
    seq_scale: np.ndarray

    @classmethod
    def fit(cls, train: VIDataset) -> Normalizer:
        x = train.frame[train.tabular].to_numpy(dtype=np.float64)
        with warnings.catch_warnings():  # a column with no value at all scales by 1 around 0
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nan_to_num(np.nanmean(x, axis=0)) if len(x) else np.zeros(x.shape[1])
            std = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.ones(x.shape[1])
        seq_mean, seq_scale = np.zeros(len(train.channels)), np.ones(len(train.channels))
        if train.sequences is not None and len(train):
            seen = train.sequences[train.sequences[..., train.channels.index(MASK_CHANNEL)] > 0]
            seq_mean, seq_scale = seen.mean(axis=0), seen.std(axis=0)
            keep = [c == MASK_CHANNEL for c in train.channels]
            seq_mean[keep], seq_scale[keep] = 0.0, 1.0  # the mask stays 0/1
        return cls(
            list(train.tabular),
            mean,
            np.where(std > 1e-12, std, 1.0),
            seq_mean,
            np.where(seq_scale > 1e-12, seq_scale, 1.0),
        )

    def tabular(self, ds: VIDataset) -> np.ndarray:
        if list(ds.tabular) != self.names:
            raise ValueError(
                f"features differ from the ones the normaliser was fitted on "
                f"({feature_list_hash(ds.tabular)} != {feature_list_hash(self.names)})"
            )
        return self.transform(ds.frame[self.names].to_numpy(dtype=np.float64))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows of the fitted features, in ``names`` order, scaled (missing values: 0)."""
        x = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def sequences(self, ds: VIDataset) -> np.ndarray:
        if ds.sequences is None:
            raise ValueError("this dataset was read without the sequence service")
        mask = ds.sequences[..., ds.channels.index(MASK_CHANNEL)][..., None] > 0
        x = (ds.sequences - self.seq_mean) / self.seq_scale
        return np.where(mask, x, 0.0).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "names": self.names,
            **{k: getattr(self, k).tolist() for k in ("mean", "scale", "seq_mean", "seq_scale")},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "seq_mean", "seq_scale")}
        return cls(list(d["names"]), **arrays)
