"""What the policy sees and what its actions mean, one implementation for the environment and the
policy strategy of the backtester (and later the live executor).

Observation at step k (time t_k, a whole second): the normalised features of decision offset
min(k, last) (nothing later than t_k: decisions stop at offset 9 and their features stay the last
known), optionally the model's outputs of that decision, then the trader's own state: holding or
not, the unrealised return of the holding, the return since the first decision second, the time
through the horizon and whether new entries are still open. Every value is clipped to +-10.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOLD, BUY_ACTION, SELL_ACTION = 0, 1, 2
ACTIONS = ("hold", "buy", "sell")
STATE_NAMES = (
    "holding",
    "unrealised_return_pct",
    "return_since_start_pct",
    "time_through_horizon",
    "entry_open",
)
CLIP = 10.0


@dataclass(frozen=True)
class ObservationInterpreter:
    n_features: int
    n_outputs: int = 0

    @property
    def size(self) -> int:
        return self.n_features + self.n_outputs + len(STATE_NAMES)

    def observe(
        self,
        features: np.ndarray,
        outputs: np.ndarray | None,
        holding: bool,
        entry_price: float,
        start_price: float,
        mark: float,
        time_through: float,
        entry_open: bool,
    ) -> np.ndarray:
        unrealised = (mark / entry_price - 1.0) * 100 if holding and entry_price > 0 else 0.0
        since = (mark / start_price - 1.0) * 100 if start_price > 0 else 0.0
        state = [float(holding), unrealised, since, time_through, float(entry_open)]
        parts = [features.astype(np.float32)]
        if self.n_outputs:
            parts.append(
                np.zeros(self.n_outputs, np.float32) if outputs is None else outputs.astype(np.float32)
            )
        parts.append(np.asarray(state, np.float32))
        return np.clip(np.nan_to_num(np.concatenate(parts)), -CLIP, CLIP).astype(np.float32)


def observed_outputs(values: np.ndarray) -> np.ndarray:
    """A model's outputs (``MODEL_OUTPUTS`` order: continuation and rebound probabilities, expected
    return, entry second) on the scale of the other observations."""
    return np.asarray(values, np.float64) * np.array([1.0, 1.0, 100.0, 0.1])


def decision_row(k: int, decisions: int) -> int:
    """The decision whose features an observation at step k reads (the latest at or before k)."""
    return min(k, decisions - 1)
