"""What the model service answers, without the HTTP: a decision's features read from the Feast
online store through ``feature_repo``'s one reader, the registered model's prediction, and the
registered policy's action. The BentoML service (serving/service.py) and the live executor call
the same object, so the in-process and HTTP answers cannot differ."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.strategies import MODEL_OUTPUTS
from feature_repo.definitions import SEQUENCE_SERVICE
from feature_repo.labels import HORIZONS_S
from feature_repo.store import DecisionReader, open_store, shown_url
from serving.schemas import Action, ActRequest, DecisionKey, Metadata, Prediction
from training import registry
from training.dataset import CAUSES, VIDataset, feature_list_hash
from training.evaluate import MAIN_HORIZON_S
from training.models import LightGBM, Model
from training.pipeline import decision_outputs
from training.rl.interpreters import ACTIONS, ObservationInterpreter, observed_outputs
from training.rl.simulator import SimConfig

log = logging.getLogger(__name__)


class UnknownDecision(LookupError):
    """The online store holds no such VI, or no decision of it at that offset (a 404)."""


class NoPolicy(RuntimeError):
    """/act was asked but no policy is loaded (the service runs without one)."""


def stock_of(event_id: str) -> str:
    return event_id.split("-", 1)[0]


class _Reads:
    """A feature service's reader that tells an unknown VI from a decision not (yet) pushed."""

    def __init__(self, store, service: str) -> None:
        self.reader = DecisionReader(store, service)
        self.names = [n for _, names in self.reader.views for n in names]
        views = self.reader.views
        self.event_level = {n for view, names in views if view.join_keys == ["event_id"] for n in names}
        self.decision_level = {
            n for view, names in views if "decision_offset_s" in view.join_keys for n in names
        }

    def read(self, key: DecisionKey) -> dict[str, object]:
        values = self.reader.read(key.event_id, key.decision_offset, stock_of(key.event_id))
        if self.event_level and all(values[n] is None for n in self.event_level):
            raise UnknownDecision(f"no VI {key.event_id!r} in the online store")
        if self.decision_level and all(values[n] is None for n in self.decision_level):
            raise UnknownDecision(
                f"VI {key.event_id!r} has no decision at offset {key.decision_offset} in the online store"
            )
        return values


@dataclass
class _Policy:
    act: object  # the greedy policy: observation -> action index
    normalizer: object
    meta: dict
    sim: SimConfig
    interpreter: ObservationInterpreter
    reads: _Reads
    observed: Model | None  # the model whose outputs the policy observes, if any


class DecisionService:
    def __init__(
        self,
        feast_dir: Path,
        online_store: str,
        model_tag: str,
        policy_tag: str | None = None,
    ) -> None:
        store = open_store(feast_dir, online_store)
        self.online_store = shown_url(online_store)
        self.model, self.meta = registry.load(model_tag)
        self.service = self.meta["feature_service"]
        self.reads = _Reads(store, self.service)
        registry.check_features(self.meta, self.reads.names)
        # LightGBM reads the tabular features only (its metadata still lists the dataset's channels)
        self.tabular_only = isinstance(self.model, LightGBM)
        self.channels = [] if self.tabular_only else list(self.meta.get("channels") or [])
        self.sequences = _Reads(store, SEQUENCE_SERVICE) if self.channels else None
        self.horizon = HORIZONS_S.index(MAIN_HORIZON_S)
        self.policy: _Policy | None = None
        self.no_policy = "no policy configured (VICAP_SERVE_POLICY is empty)"
        if policy_tag:
            self._load_policy(store, policy_tag)
        self._warm_up()

    def _load_policy(self, store, tag: str) -> None:
        import bentoml

        try:
            greedy, normalizer, meta = registry.load_policy(tag)
        except bentoml.exceptions.NotFound:
            self.no_policy = f"no registered policy {tag!r} (train one with `vicap rl train`)"
            log.warning("/act is off: %s", self.no_policy)
            return
        service = meta.get("feature_service", self.service)
        reads = self.reads if service == self.service else _Reads(store, service)
        missing = sorted(set(normalizer.names) - set(reads.names))
        if missing:
            raise registry.FeatureMismatch(
                f"policy {meta['tag']} observes features that {service!r} does not serve: {missing[:5]}"
            )
        observe = bool(meta.get("env", {}).get("observe_outputs"))
        observed = None
        if observe:
            observed_tag = meta.get("observed_model", self.meta["tag"])
            observed = self.model if observed_tag == self.meta["tag"] else registry.load(observed_tag)[0]
        interpreter = ObservationInterpreter(len(normalizer.names), len(MODEL_OUTPUTS) if observe else 0)
        sim = SimConfig.from_dict(meta["env"]["sim"])
        self.policy = _Policy(greedy, normalizer, meta, sim, interpreter, reads, observed)

    def _warm_up(self) -> None:
        """The first online read loads the registry (about 300 ms): pay it before the first request."""
        with contextlib.suppress(UnknownDecision):
            self.reads.read(DecisionKey(event_id="000000-0", decision_offset=0))

    def _dataset(self, key: DecisionKey, values: dict[str, object]) -> VIDataset:
        frame = pd.DataFrame([values], columns=self.reads.names).astype(float)
        sequences = None
        if self.sequences is not None:
            seq = self.sequences.read(key)
            sequences = np.stack([np.asarray(seq[c], np.float32) for c in self.channels], axis=-1)[None]
        return VIDataset(frame, self.reads.names, sequences, self.channels)

    def predict(self, key: DecisionKey) -> Prediction:
        values = self.reads.read(key)
        if self.tabular_only:
            raw = np.array([[values[n] for n in self.reads.names]], dtype=np.float64)  # None -> NaN
            pred = self.model.predict_features(raw)
        else:
            pred = self.model.predict(self._dataset(key, values))
        cause = np.clip(pred.cause[0].astype(float), 0.0, None)
        cause = cause / cause.sum()
        direction = float(values.get("trig_direction") or 0.0)
        return Prediction(
            rebound_probability=float(pred.rebound[0, self.horizon]),
            continuation_probability=float(pred.continuation[0, self.horizon]),
            expected_return=direction * float(pred.ret_dir[0, self.horizon]),
            entry_second=int(np.argmax(pred.entry[0])),
            cause_probabilities=dict(zip(CAUSES, cause.tolist(), strict=True)),
            model_version=self.meta["tag"],
            horizon_s=MAIN_HORIZON_S,
        )

    def act(self, request: ActRequest) -> Action:
        p = self.policy
        if p is None:
            raise NoPolicy(self.no_policy)
        values = p.reads.read(request)
        raw = np.array([values.get(n) for n in p.normalizer.names], dtype=np.float64)
        outputs = None
        if p.observed is not None:
            row = decision_outputs(p.observed, self._dataset(request, values)).iloc[0]
            outputs = observed_outputs(row[list(MODEL_OUTPUTS)].to_numpy(np.float64))
        k = request.decision_offset if request.step_s is None else request.step_s
        r = request
        obs = p.interpreter.observe(
            p.normalizer.transform(raw[None, :])[0], outputs, r.holding, r.entry_price, r.start_price,
            r.last_price, p.sim.time_through(k), p.sim.start_s <= k < p.sim.entry_window_s,
        )  # fmt: skip
        return Action(action=ACTIONS[p.act(obs)], policy_version=p.meta["tag"])

    def metadata(self) -> Metadata:
        return Metadata(
            model_version=self.meta["tag"],
            model_kind=self.meta["kind"],
            policy_version=self.policy.meta["tag"] if self.policy else None,
            feature_service=self.service,
            feature_list_hash=feature_list_hash(self.reads.names),
            features=self.reads.names,
            sequence_channels=self.channels,
            online_store=self.online_store,
            horizon_s=MAIN_HORIZON_S,
            causes=list(CAUSES),
        )

    def healthy(self) -> bool:
        """The online store answers (a read of a key that is not there)."""
        try:
            self._warm_up()
        except Exception:
            log.exception("online store read failed")
            return False
        return True
