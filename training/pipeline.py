"""What ``vicap train``, ``vicap tune`` and ``vicap evaluate`` do, without the command line: read a
data root's dataset from Feast, split it, fit, register, score every model beside the baselines,
the base rate and (on synthetic data) the oracles, and write the model report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feature_repo.definitions import SEQUENCE_SERVICE, SERVICE
from feature_repo.labels import HORIZONS_S
from training import evaluate
from training.dataset import Fold, VIDataset, load_dataset, walk_forward
from training.models import BaseRate, CauseOracle, LatentDriftOracle, LightGBM, Logistic, Model

NEURAL_KINDS = ("transformer", "lstm")


@dataclass(frozen=True)
class Split:
    """The last walk-forward fold of a dataset, as datasets."""

    fold: Fold
    train: VIDataset
    validation: VIDataset
    test: VIDataset

    @classmethod
    def of(cls, ds: VIDataset, folds: int = 1, purge_days: int = 1) -> Split:
        fold = walk_forward(ds.days, folds, purge_days=purge_days)[-1]
        return cls(fold, ds.on_days(fold.train), ds.on_days(fold.validation), ds.on_days(fold.test))

    def describe(self) -> dict:
        def days(d: tuple) -> list[str]:
            return [x.isoformat() for x in d]

        return {
            "train_days": days(self.fold.train),
            "validation_days": days(self.fold.validation),
            "test_days": days(self.fold.test),
            "rows": {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)},
        }


def read(settings, service: str = SERVICE, sequences: bool = True) -> VIDataset:
    """The labelled decisions of the settings' data root, through its applied Feast store."""
    from feature_repo.store import open_store, registry_path

    paths = settings.paths
    if not registry_path(paths.feast).exists():
        raise FileNotFoundError(f"{paths.feast}: no Feast registry (run `vicap features apply` first)")
    store = open_store(paths.feast, settings.online_store.get_secret_value())
    return load_dataset(store, paths.labels, service, SEQUENCE_SERVICE if sequences else None)


def reference_models(split: Split) -> dict[str, Model]:
    """The base rate, the logistic regression and LightGBM fitted on the split, and the oracles
    where the labels carry the synthetic market's ground truth."""
    out: dict[str, Model] = {}
    for model in (BaseRate(), Logistic(), LightGBM()):
        out[model.kind] = model.fit(split.train, split.validation)
    frame = split.train.frame
    if "latent_drift" in frame and frame["latent_drift"].notna().any():
        out["oracle: latent drift"] = LatentDriftOracle().fit(split.train, split.validation)
    if (frame["cause_index"] >= 0).any():
        out["oracle: true cause"] = CauseOracle().fit(split.train, split.validation)
    return out


def compare(models: dict[str, Model], split: Split, bootstrap: int = evaluate.BOOTSTRAP) -> dict:
    """Every model scored on the split's test rows; metrics carry 95% event-bootstrap intervals."""
    rates = split.train.targets()["continuation"].mean(axis=0)
    out: dict = {"split": split.describe(), "base_rate_test": {}, "models": {}}
    y = split.test.targets()["continuation"]
    out["base_rate_test"] = {f"{h}s": float(y[:, j].mean()) for j, h in enumerate(HORIZONS_S)}
    for name, model in models.items():
        pred = model.predict(split.test)
        out["models"][name] = {
            "kind": model.kind,
            "metrics": evaluate.score(pred, split.test, rates, bootstrap).to_dict("records"),
            "by_group": evaluate.by_group(pred, split.test).to_dict("records"),
            "reliability": evaluate.reliability(pred, split.test).to_dict("records"),
            "cause_confusion": evaluate.confusion(pred, split.test).to_dict(),
        }
    return out


def metrics_table(result: dict, names: list[str] | None = None) -> pd.DataFrame:
    """Rows: models; columns: the headline metrics as 'value [lo, hi]'."""
    headline = [f"roc_auc_{h}s" for h in HORIZONS_S] + [
        "pr_auc_60s", "brier_60s", "accuracy_60s", "base_accuracy_60s", "return_corr_60s",
        "rebound_roc_auc_60s",
        "entry_exact", "entry_within_1s", "cause_macro_f1",
    ]  # fmt: skip
    rows = []
    for name, m in result["models"].items():
        if names and name not in names:
            continue
        by = {r["metric"]: r for r in m["metrics"]}
        rows.append({"model": name, **{k: _fmt(by[k]) for k in headline}})
    return pd.DataFrame(rows).set_index("model")


def _fmt(r: dict) -> str:
    if not np.isfinite(r["value"]):
        return "n/a"
    if not np.isfinite(r["lo"]):
        return f"{r['value']:.3f}"
    return f"{r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def write_report(result: dict, out_dir: Path, title: str) -> Path:
    """``metrics.json`` and ``index.html`` (tables, a reliability plot) under ``out_dir``."""
    from training.report import render

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=_json), encoding="utf-8")
    html = render(result, metrics_table(result), title)
    (out_dir / "index.html").write_text(html, encoding="utf-8")
    return out_dir / "index.html"


def _json(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value)}")


def decision_outputs(model: Model, ds: VIDataset) -> pd.DataFrame:
    """A model's answers per decision row of ``ds`` at the main horizon, in the names strategies and
    the policy read (``backtest.strategies.MODEL_OUTPUTS``)."""
    j = HORIZONS_S.index(evaluate.MAIN_HORIZON_S)
    pred = model.predict(ds)
    h = evaluate.MAIN_HORIZON_S
    return pd.DataFrame(
        {
            f"continuation_{h}s": pred.continuation[:, j],
            f"rebound_{h}s": pred.rebound[:, j],
            f"expected_return_{h}s": pred.ret_dir[:, j],
            "entry_second": np.argmax(pred.entry, axis=1).astype(float),
        }
    )


def validation_threshold(model: Model, validation: VIDataset, min_trades: int = 10) -> float:
    """The model strategy's probability threshold, chosen on validation days (never the test): of
    the quantiles of the model's probability at the release (continuation for up VIs, rebound for
    down VIs), the one whose trades would have earned the most there net of costs, counting only
    thresholds that keep ``min_trades`` trades. 0.5 (break-even for calibrated probabilities)
    when validation holds too few VIs."""
    f = validation.frame
    first = (f["decision_offset_s"] == 0).to_numpy()
    if first.sum() < min_trades:
        return 0.5
    h = evaluate.MAIN_HORIZON_S
    out = decision_outputs(model, validation)[first]
    up = f["direction"].to_numpy()[first] > 0
    p = np.where(up, out[f"continuation_{h}s"], out[f"rebound_{h}s"])
    ret = f[f"ret_dir_{h}s"].to_numpy()[first]
    net = np.where(up, ret, -ret) - f["round_trip_cost"].to_numpy()[first]
    best, best_net = 0.5, -np.inf
    for t in np.unique(np.quantile(p, np.linspace(0.5, 0.98, 25))):
        chosen = p >= t
        if chosen.sum() >= min_trades and net[chosen].sum() > best_net:
            best, best_net = float(t), float(net[chosen].sum())
    return best
