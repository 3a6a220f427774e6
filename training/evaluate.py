"""Scores of models on out-of-time test rows, each with a bootstrap confidence interval over VI
events (the ten decisions of one VI are not independent samples, so whole events are resampled).

Per horizon: the continuation head's ROC AUC, PR AUC, Brier score and accuracy beside the base
rate's, the rebound head's ROC AUC, the correlation of the expected return with the realised one;
entry-second accuracy (exact, within 1 s); the cause's macro-F1 and confusion matrix; AUC at the
main horizon by cause and by VI type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, roc_auc_score

from feature_repo.labels import HORIZONS_S
from training.dataset import CAUSES, VIDataset
from training.models import Predictions

MAIN_HORIZON_S = 60
BOOTSTRAP = 200
MIN_PER_CLASS = 10  # an AUC needs this many rows of each outcome


def vi_types(ds: VIDataset) -> np.ndarray:
    f = ds.frame
    return np.select(
        [f["trig_both"] > 0, f["trig_static"] > 0, f["trig_dynamic"] > 0],
        ["both", "static", "dynamic"],
        "unknown",
    )


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    if min(y.sum(), len(y) - y.sum()) < MIN_PER_CLASS:
        return np.nan
    return float(roc_auc_score(y, p))


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else np.nan


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and a.std() > 0 and b.std() > 0 else np.nan


def metric_functions(base_rates: np.ndarray) -> dict[str, Callable[[dict, Predictions], float]]:
    """name -> f(targets, predictions); ``base_rates``: the training continuation rate per horizon
    (the base rate's accuracy predicts its majority outcome)."""
    fns: dict[str, Callable] = {}
    for j, h in enumerate(HORIZONS_S):
        fns[f"roc_auc_{h}s"] = lambda y, p, j=j: _auc(y["continuation"][:, j], p.continuation[:, j])
        fns[f"pr_auc_{h}s"] = lambda y, p, j=j: _pr_auc(y["continuation"][:, j], p.continuation[:, j])
        fns[f"brier_{h}s"] = lambda y, p, j=j: float(
            brier_score_loss(y["continuation"][:, j], p.continuation[:, j])
        )
        fns[f"accuracy_{h}s"] = lambda y, p, j=j: float(
            ((p.continuation[:, j] > 0.5) == y["continuation"][:, j]).mean()
        )
        fns[f"base_accuracy_{h}s"] = lambda y, p, j=j: float(
            (y["continuation"][:, j] == float(base_rates[j] > 0.5)).mean()
        )
        fns[f"return_corr_{h}s"] = lambda y, p, j=j: _corr(p.ret_dir[:, j], y["ret_dir"][:, j])
        fns[f"rebound_roc_auc_{h}s"] = lambda y, p, j=j: _auc(y["rebound"][:, j], p.rebound[:, j])
    fns["entry_exact"] = lambda y, p: float((p.entry.argmax(1) == y["entry"]).mean())
    fns["entry_within_1s"] = lambda y, p: float((np.abs(p.entry.argmax(1) - y["entry"]) <= 1).mean())

    def macro_f1(y: dict, p: Predictions) -> float:
        known = y["cause"] >= 0
        if not known.any():
            return np.nan
        labels = list(range(len(CAUSES)))
        return float(
            f1_score(
                y["cause"][known], p.cause[known].argmax(1), labels=labels, average="macro", zero_division=0
            )
        )

    fns["cause_macro_f1"] = macro_f1
    return fns


def _event_rows(ds: VIDataset) -> list[np.ndarray]:
    codes = pd.factorize(ds.frame["event_id"])[0]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


def score(
    pred: Predictions, ds: VIDataset, base_rates: np.ndarray, bootstrap: int = BOOTSTRAP, seed: int = 0
) -> pd.DataFrame:
    """metric, value, lo, hi (95% percentile interval over events resampled with replacement)."""
    y, fns = ds.targets(), metric_functions(base_rates)
    values = {name: fn(y, pred) for name, fn in fns.items()}
    groups = _event_rows(ds)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(bootstrap if len(groups) > 1 else 0):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        yb = {k: v[rows] for k, v in y.items()}
        pb = pred.take(rows)
        for name, fn in fns.items():
            draws[name].append(fn(yb, pb))
    out = []
    for name, value in values.items():
        d = np.asarray(draws[name], dtype=float)
        d = d[np.isfinite(d)]
        lo, hi = np.percentile(d, [2.5, 97.5]) if len(d) >= 20 else (np.nan, np.nan)
        out.append({"metric": name, "value": value, "lo": float(lo), "hi": float(hi)})
    return pd.DataFrame(out)


def by_group(pred: Predictions, ds: VIDataset) -> pd.DataFrame:
    """ROC AUC at the main horizon and the continuation rate by cause and by VI type."""
    j = HORIZONS_S.index(MAIN_HORIZON_S)
    y = ds.targets()["continuation"][:, j]
    p = pred.continuation[:, j]
    rows = []
    for split, keys in (
        ("cause", ds.frame["cause"].fillna("unknown").to_numpy(str)),
        ("vi_type", vi_types(ds)),
    ):
        for key in sorted(set(keys)):
            m = keys == key
            rows.append(
                {"split": split, "group": key, "rows": int(m.sum()), "continuation_rate": float(y[m].mean()),
                 f"roc_auc_{MAIN_HORIZON_S}s": _auc(y[m], p[m])}
            )  # fmt: skip
    return pd.DataFrame(rows)


def confusion(pred: Predictions, ds: VIDataset) -> pd.DataFrame:
    """Cause confusion counts (true rows x predicted columns) over rows of known cause."""
    y = ds.targets()["cause"]
    known = y >= 0
    m = np.zeros((len(CAUSES), len(CAUSES)), dtype=int)
    np.add.at(m, (y[known], pred.cause[known].argmax(1)), 1)
    return pd.DataFrame(m, index=list(CAUSES), columns=list(CAUSES))


def reliability(pred: Predictions, ds: VIDataset, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability vs observed continuation rate by probability bin, main horizon."""
    j = HORIZONS_S.index(MAIN_HORIZON_S)
    p, y = pred.continuation[:, j], ds.targets()["continuation"][:, j]
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    rows = [
        {"bin": b, "predicted": float(p[which == b].mean()), "observed": float(y[which == b].mean()),
         "rows": int((which == b).sum())}
        for b in range(bins) if (which == b).any()
    ]  # fmt: skip
    return pd.DataFrame(rows)
