"""Every model behind one interface: ``fit(train, validation)`` then ``predict(dataset)`` ->
:class:`Predictions`. The neural models (Transformer, LSTM: ``training.nets``), LightGBM and a
logistic regression on the tabular features, the base rate, and on synthetic data two oracles
from the VI log's ground truth (the latent drift; the true cause alone).

Binary heads are calibrated on the validation rows (isotonic), the normaliser is fitted on the
training rows only; both travel with a saved model (``state()``/``from_state``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression, Ridge

from training.dataset import CAUSES, ENTRY_SECONDS, Normalizer, VIDataset

BINARY = ("continuation", "rebound")


@dataclass
class Predictions:
    """Per decision: probabilities of continuation and rebound per horizon (net of costs), the
    expected return in the VI's direction per horizon (fraction), and distributions over the entry
    second (0-9) and the cause."""

    continuation: np.ndarray
    rebound: np.ndarray
    ret_dir: np.ndarray
    entry: np.ndarray
    cause: np.ndarray

    def take(self, rows: np.ndarray) -> Predictions:
        return Predictions(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def _constant(n: int, row: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(row, dtype=np.float64)[None, :], n, axis=0)


def _distribution(labels: np.ndarray, classes: int) -> np.ndarray:
    known = labels[labels >= 0]
    counts = np.bincount(known, minlength=classes).astype(float) + 1.0  # Laplace: no class has 0
    return counts / counts.sum()


class Calibration:
    """Isotonic maps of each binary head's probabilities, fitted on validation rows."""

    def __init__(self, maps: dict[str, list[tuple[list[float], list[float]]]] | None = None) -> None:
        self.maps = maps or {}

    @classmethod
    def fit(cls, pred: Predictions, validation: VIDataset) -> Calibration:
        y = validation.targets()
        maps = {}
        for head in BINARY:
            maps[head] = []
            for j in range(y[head].shape[1]):
                iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
                iso.fit(getattr(pred, head)[:, j], y[head][:, j])
                maps[head].append((iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()))
        return cls(maps)

    def apply(self, pred: Predictions) -> Predictions:
        for head, per_horizon in self.maps.items():
            p = getattr(pred, head).copy()
            for j, (xs, ys) in enumerate(per_horizon):
                p[:, j] = np.interp(p[:, j], xs, ys) if len(xs) > 1 else (ys[0] if ys else p[:, j])
            setattr(pred, head, p)
        return pred


class Model:
    """The interface. ``kind`` names the family; ``state()`` is what the registry saves beside the
    kind's own weights file (JSON-safe)."""

    kind = "model"
    calibrated = True

    def __init__(self) -> None:
        self.normalizer: Normalizer | None = None
        self.calibration = Calibration()

    def fit(self, train: VIDataset, validation: VIDataset) -> Model:
        self.normalizer = Normalizer.fit(train)
        self._fit(train, validation)
        if self.calibrated and len(validation):
            self.calibrate(validation)
        return self

    def calibrate(self, validation: VIDataset) -> None:
        """Fit the binary heads' calibration on ``validation`` (after the weights are final)."""
        self.calibration = Calibration.fit(self._predict(validation), validation)

    def predict(self, ds: VIDataset) -> Predictions:
        return self.calibration.apply(self._predict(ds))

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        raise NotImplementedError

    def _predict(self, ds: VIDataset) -> Predictions:
        raise NotImplementedError


class BaseRate(Model):
    """The training period's frequencies: what a model must beat."""

    kind = "base_rate"
    calibrated = False

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        y = train.targets()
        self.rates = {h: y[h].mean(axis=0) for h in BINARY}
        self.ret = y["ret_dir"].mean(axis=0)
        self.entry = _distribution(y["entry"], ENTRY_SECONDS)
        self.cause = _distribution(y["cause"], len(CAUSES))

    def _predict(self, ds: VIDataset) -> Predictions:
        n = len(ds)
        return Predictions(
            _constant(n, self.rates["continuation"]),
            _constant(n, self.rates["rebound"]),
            _constant(n, self.ret),
            _constant(n, self.entry),
            _constant(n, self.cause),
        )


def _multiclass_proba(model, x: np.ndarray, classes: int) -> np.ndarray:
    """``predict_proba`` spread over all ``classes`` (a class absent from training gets 0)."""
    out = np.zeros((len(x), classes))
    out[:, model.classes_.astype(int)] = model.predict_proba(x)
    return out


class Logistic(Model):
    """Logistic regressions on the tabular features (ridge for the returns), one per target."""

    kind = "logistic"

    def _classifier(self):
        return LogisticRegression(C=0.1, max_iter=2000)

    def _regressor(self):
        return Ridge(alpha=10.0)

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        x, y = self.normalizer.tabular(train), train.targets()
        self.fallback = BaseRate()
        self.fallback.normalizer = self.normalizer
        self.fallback._fit(train, validation)
        self.models: dict[str, list] = {}
        for head in BINARY:
            cols = y[head].T.astype(int)
            self.models[head] = [self._classifier().fit(x, c) if 0 < c.mean() < 1 else None for c in cols]
        self.models["ret"] = [self._regressor().fit(x, col) for col in y["ret_dir"].T]
        self.models["entry"] = [self._classifier().fit(x, y["entry"]) if len(set(y["entry"])) > 1 else None]
        known = y["cause"] >= 0
        many = len(set(y["cause"][known])) > 1
        self.models["cause"] = [self._classifier().fit(x[known], y["cause"][known]) if many else None]

    def _predict(self, ds: VIDataset) -> Predictions:
        x, base = self.normalizer.tabular(ds), self.fallback._predict(ds)

        def binary(head: str) -> np.ndarray:
            cols = [
                m.predict_proba(x)[:, 1] if m is not None else getattr(base, head)[:, j]
                for j, m in enumerate(self.models[head])
            ]
            return np.stack(cols, axis=1)

        entry, cause = self.models["entry"][0], self.models["cause"][0]
        return Predictions(
            binary("continuation"),
            binary("rebound"),
            np.stack([m.predict(x) for m in self.models["ret"]], axis=1),
            _multiclass_proba(entry, x, ENTRY_SECONDS) if entry is not None else base.entry,
            _multiclass_proba(cause, x, len(CAUSES)) if cause is not None else base.cause,
        )


SMALL_BATCH = 64  # rows predicted on one thread


class LightGBM(Model):
    """Gradient-boosted trees on the tabular features (the strongest baseline in qlib's public
    benchmarks), one booster per target, each stopped early on the validation rows. Small trees:
    a few thousand VIs do not support more. Boosters save in LightGBM's own text format."""

    kind = "lightgbm"

    def __init__(self, rounds: int = 300, learning_rate: float = 0.03, num_leaves: int = 15) -> None:
        super().__init__()
        self.rounds = rounds
        self.params = {
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "min_data_in_leaf": 40,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
            "verbosity": -1,
            "num_threads": 2,
            "seed": 0,
        }
        self.boosters: dict[str, list] = {}

    def _targets(self, y: dict[str, np.ndarray]) -> list[tuple[str, int, np.ndarray, dict]]:
        """(head, column, labels, objective) for every booster."""
        out = []
        for head in BINARY:
            out += [(head, j, c, {"objective": "binary"}) for j, c in enumerate(y[head].T)]
        huber = {"objective": "huber", "alpha": 0.02}
        out += [("ret_dir", j, c, huber) for j, c in enumerate(y["ret_dir"].T)]
        out.append(("entry", 0, y["entry"], {"objective": "multiclass", "num_class": ENTRY_SECONDS}))
        out.append(("cause", 0, y["cause"], {"objective": "multiclass", "num_class": len(CAUSES)}))
        return out

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        import lightgbm as lgb

        x, xv = self.normalizer.tabular(train), self.normalizer.tabular(validation)
        y, yv = train.targets(), validation.targets()
        self.boosters = {}
        pairs = zip(self._targets(y), self._targets(yv), strict=True)
        for (head, _, label, objective), (_, _, vlabel, _) in pairs:
            rows, vrows = label >= 0, vlabel >= 0  # causes: known rows only
            data = lgb.Dataset(x[rows], label[rows])
            valid = [lgb.Dataset(xv[vrows], vlabel[vrows], reference=data)] if vrows.sum() > 1 else []
            booster = lgb.train(
                self.params | objective,
                data,
                num_boost_round=self.rounds,
                valid_sets=valid,
                callbacks=[lgb.early_stopping(30, verbose=False)] if valid else [],
            )
            self.boosters.setdefault(head, []).append(booster)

    def _predict(self, ds: VIDataset) -> Predictions:
        return self._predict_scaled(self.normalizer.tabular(ds))

    def predict_features(self, raw: np.ndarray) -> Predictions:
        """Calibrated predictions for rows of raw features in ``normalizer.names`` order (NaN where
        missing): the model service's path, without building a dataset frame per request."""
        return self.calibration.apply(self._predict_scaled(self.normalizer.transform(raw)))

    def _predict_scaled(self, x: np.ndarray) -> Predictions:
        # a row or a few (the service, the live executor): one thread; OpenMP's hand-off costs
        # more than the trees, and on two busy cores it waits for the other one
        threads = {"num_threads": 1} if len(x) <= SMALL_BATCH else {}

        def run(head: str) -> list[np.ndarray]:
            return [
                b.predict(x, num_iteration=b.best_iteration or None, **threads) for b in self.boosters[head]
            ]

        return Predictions(
            np.stack(run("continuation"), axis=1),
            np.stack(run("rebound"), axis=1),
            np.stack(run("ret_dir"), axis=1),
            run("entry")[0],
            run("cause")[0],
        )

    def booster_texts(self) -> dict[str, list[str]]:
        return {head: [b.model_to_string() for b in bs] for head, bs in self.boosters.items()}

    def load_boosters(self, texts: dict[str, list[str]]) -> None:
        import lightgbm as lgb

        self.boosters = {head: [lgb.Booster(model_str=t) for t in ts] for head, ts in texts.items()}


class LatentDriftOracle(Model):
    """Synthetic data only: the latent drift the market planned after the jump, in the VI's
    direction, mapped to probabilities on the training rows. What knowing the hidden move is worth."""

    kind = "oracle_latent_drift"
    calibrated = False

    @staticmethod
    def _score(ds: VIDataset) -> np.ndarray:
        if "latent_drift" not in ds.frame or ds.frame["latent_drift"].isna().all():
            raise ValueError("no latent drift in the labels: the oracle needs a synthetic market's VI log")
        d = ds.frame["direction"].to_numpy(float) * ds.frame["latent_drift"].fillna(0.0).to_numpy(float)
        return d[:, None] * 100.0

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        s, y = self._score(train), train.targets()
        self.base = BaseRate()
        self.base._fit(train, validation)
        self.maps = {
            head: [LogisticRegression().fit(s, c) if 0 < c.mean() < 1 else None for c in cols]
            for head, cols in ((h, y[h].T.astype(int)) for h in BINARY)
        }
        self.ret = [Ridge(alpha=1e-3).fit(s, c) for c in y["ret_dir"].T]

    def _predict(self, ds: VIDataset) -> Predictions:
        s, base = self._score(ds), self.base._predict(ds)
        binary = {
            head: np.stack(
                [m.predict_proba(s)[:, 1] if m else getattr(base, head)[:, j] for j, m in enumerate(ms)], 1
            )
            for head, ms in self.maps.items()
        }
        ret = np.stack([m.predict(s) for m in self.ret], axis=1)
        return Predictions(binary["continuation"], binary["rebound"], ret, base.entry, base.cause)


class CauseOracle(Model):
    """Synthetic data only: the true cause alone, each cause's training frequencies (and the cause
    head certain of it). What knowing the cause is worth."""

    kind = "oracle_cause"
    calibrated = False

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        y = train.targets()
        if (y["cause"] < 0).all():
            raise ValueError("no causes in the labels: the oracle needs a synthetic market's VI log")
        self.base = BaseRate()
        self.base._fit(train, validation)
        self.by_cause = {}
        for c in range(len(CAUSES)):
            rows = y["cause"] == c
            if rows.any():
                self.by_cause[c] = (
                    y["continuation"][rows].mean(0), y["rebound"][rows].mean(0), y["ret_dir"][rows].mean(0)
                )  # fmt: skip

    def _predict(self, ds: VIDataset) -> Predictions:
        pred = self.base._predict(ds)
        cause = ds.targets()["cause"]
        for c, (cont, reb, ret) in self.by_cause.items():
            rows = cause == c
            pred.continuation[rows], pred.rebound[rows], pred.ret_dir[rows] = cont, reb, ret
        known = cause >= 0
        pred.cause[known] = np.eye(len(CAUSES))[cause[known]]
        return pred
