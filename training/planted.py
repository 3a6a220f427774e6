"""A labelled set of VI decisions with a planted signal, for the model tests and the training
benchmarks: what a model should learn is known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_repo.features import SEQUENCE_CHANNELS, SEQUENCE_LENGTH
from feature_repo.labels import HORIZONS_S
from training.dataset import CAUSES, VIDataset, add_targets

COST = 0.0021


def planted(
    events: int = 1200,
    days: int = 12,
    strength: float = 1.0,
    seed: int = 0,
    noise_features: int = 2,
    decisions: int = 2,
) -> VIDataset:
    """``events`` VIs over ``days`` days, ``decisions`` decision rows each. ``signal`` (a tabular
    feature, and the last seconds of the ``seq_flow`` channel) moves each VI's return in its
    direction, independent noise the rest; the ``noise_<i>`` features are noise. The latent drift
    is the signal's part of the return (what the oracle reads). ``strength`` 0: nothing to learn."""
    rng = np.random.default_rng(seed)
    n = events * decisions
    event = np.repeat(np.arange(events), decisions)
    signal = rng.standard_normal(events)
    day_of = np.sort(rng.integers(0, days, events))
    start = pd.Timestamp("2024-03-04 10:00", tz="Asia/Seoul")
    stamp = (
        start
        + pd.to_timedelta(day_of[event], unit="D")
        + pd.to_timedelta(event * 7 % 18_000 + np.tile(np.arange(decisions), events), unit="s")
    )
    frame = pd.DataFrame(
        {
            "event_id": [f"e{e}" for e in event],
            "decision_offset_s": np.tile(np.arange(decisions), events),
            "stock_code": "005930",
            "event_timestamp": stamp,
            "day": stamp.date,
            "direction": 1,
            "best_entry_s": (signal[event] > 0).astype(int) * 3,
            "cause": np.asarray(CAUSES)[rng.integers(0, len(CAUSES), events)][event],
            "latent_drift": 0.004 * strength * signal[event],
            "round_trip_cost": COST,
            "signal": signal[event],
        }
    )
    for h in HORIZONS_S:
        ret = frame["latent_drift"].to_numpy() + 0.004 * rng.standard_normal(n)
        frame[f"ret_{h}s"] = ret
        frame[f"continuation_net_{h}s"] = ret - COST > 0
        frame[f"rebound_net_{h}s"] = -ret - COST > 0
    noise = [f"noise_{i}" for i in range(noise_features)]
    frame = pd.concat([frame, pd.DataFrame(rng.standard_normal((n, noise_features)), columns=noise)], axis=1)
    channels = list(SEQUENCE_CHANNELS)
    seq = rng.standard_normal((n, SEQUENCE_LENGTH, len(channels))).astype(np.float32)
    seq[:, :40, :] = 0.0  # left padding
    seq[..., channels.index("seq_mask")] = 1.0
    seq[:, :40, channels.index("seq_mask")] = 0.0
    seq[:, -5:, channels.index("seq_flow")] = frame["signal"].to_numpy(np.float32)[:, None] * strength
    return VIDataset(add_targets(frame), ["signal", *noise], seq, channels)
