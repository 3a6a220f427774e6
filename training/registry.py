"""The model registry: BentoML's model store. A neural model saves its state dict (``torch.save``,
loaded with ``weights_only=True``), LightGBM its boosters in LightGBM's own text format; both
save ``state.json`` (normaliser, calibration, configs) and carry metadata: feature service,
feature list hash, data date range, fold, metrics, code version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from training.dataset import feature_list_hash
from training.models import Calibration, LightGBM, Model, Normalizer
from training.nets import NetConfig
from training.neural import NeuralModel, TrainConfig

REGISTERED_KINDS = ("transformer", "lstm", "lightgbm")


class FeatureMismatch(ValueError):
    pass


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def model_name(kind: str) -> str:
    return f"vicap-{kind}"


def save(model: Model, metadata: dict, name: str | None = None) -> str:
    """Register ``model``; returns its tag (name:version)."""
    import bentoml
    import torch

    if model.kind not in REGISTERED_KINDS:
        raise ValueError(f"{model.kind}: only {', '.join(REGISTERED_KINDS)} models are registered")
    meta = metadata | {
        "kind": model.kind,
        "feature_list_hash": feature_list_hash(model.normalizer.names),
        "code_version": code_version(),
    }
    labels = {"kind": model.kind, "service": str(metadata.get("feature_service", ""))}
    with bentoml.models.create(name or model_name(model.kind), labels=labels, metadata=meta) as ref:
        state = {"normalizer": model.normalizer.to_dict(), "calibration": model.calibration.maps}
        if isinstance(model, NeuralModel):
            torch.save(model.net.state_dict(), ref.path_of("model.pt"))
            state |= {"net": model.net_config.to_dict(), "train": model.train_config.to_dict()}
            state["channels"] = metadata["channels"]
        else:
            for head, texts in model.booster_texts().items():
                for j, text in enumerate(texts):
                    Path(ref.path_of(f"boosters/{head}_{j}.txt")).parent.mkdir(exist_ok=True)
                    Path(ref.path_of(f"boosters/{head}_{j}.txt")).write_text(text, encoding="utf-8")
        Path(ref.path_of("state.json")).write_text(json.dumps(state), encoding="utf-8")
    return str(ref.tag)


def load(tag: str) -> tuple[Model, dict]:
    """The registered model and its metadata (``name`` or ``name:version``; latest when no version)."""
    import bentoml
    import torch

    from feature_repo.labels import HORIZONS_S

    ref = bentoml.models.get(tag if ":" in tag else f"{tag}:latest")
    meta = dict(ref.info.metadata)
    state = json.loads(Path(ref.path_of("state.json")).read_text(encoding="utf-8"))
    normalizer = Normalizer.from_dict(state["normalizer"])
    if meta["kind"] == "lightgbm":
        model: Model = LightGBM()
        texts: dict[str, list[str]] = {}
        for path in sorted(
            Path(ref.path_of("boosters")).glob("*.txt"), key=lambda p: int(p.stem.rsplit("_", 1)[1])
        ):
            texts.setdefault(path.stem.rsplit("_", 1)[0], []).append(path.read_text(encoding="utf-8"))
        model.load_boosters(texts)
    else:
        cfg = state["net"]
        model = NeuralModel(NetConfig(**cfg), TrainConfig(**state["train"]))
        model.normalizer = normalizer
        model.build_for(state["channels"], len(HORIZONS_S))
        model.net.load_state_dict(torch.load(ref.path_of("model.pt"), weights_only=True))
        model.net.eval()
    model.normalizer = normalizer
    model.calibration = Calibration(state["calibration"])
    return model, meta | {"tag": str(ref.tag)}


def check_features(meta: dict, names: list[str]) -> None:
    """Fails unless ``names`` (a store's feature service, in order) is what the model was trained on."""
    have = feature_list_hash(names)
    if have != meta["feature_list_hash"]:
        raise FeatureMismatch(
            f"model {meta.get('tag', '?')} was trained on feature list {meta['feature_list_hash']} of "
            f"service {meta.get('feature_service')!r}; this store's service lists {have} "
            f"({len(names)} features): rebuild the features with this code, or retrain"
        )


def list_models() -> list[dict]:
    import bentoml

    rows = []
    for m in bentoml.models.list():
        if not m.tag.name.startswith("vicap-"):
            continue
        meta = m.info.metadata
        rows.append(
            {"tag": str(m.tag), "kind": meta.get("kind"), "created": m.info.creation_time,
             "service": meta.get("feature_service"), "test_auc_60s": meta.get("test_roc_auc_60s"),
             "data": f"{meta.get('data_from')} .. {meta.get('data_to')}"}
        )  # fmt: skip
    return sorted(rows, key=lambda r: r["created"], reverse=True)


POLICY_NAME = "vicap-ppo"


def save_policy(module_path: Path, normalizer: Normalizer, metadata: dict, name: str = POLICY_NAME) -> str:
    """Register a trained RLModule (its checkpoint folder) with the normaliser of its observations;
    returns its tag."""
    import shutil

    import bentoml

    meta = metadata | {
        "kind": "ppo",
        "feature_list_hash": feature_list_hash(normalizer.names),
        "code_version": code_version(),
    }
    labels = {"kind": "ppo", "service": str(metadata.get("feature_service", ""))}
    with bentoml.models.create(name, labels=labels, metadata=meta) as ref:
        shutil.copytree(module_path, ref.path_of("rl_module"))
        state = {"normalizer": normalizer.to_dict()}
        Path(ref.path_of("state.json")).write_text(json.dumps(state), encoding="utf-8")
    return str(ref.tag)


def load_policy(tag: str):
    """(the greedy policy, the normaliser of its observations, metadata) of a registered policy."""
    import bentoml

    from training.rl.ppo import GreedyPolicy

    ref = bentoml.models.get(tag if ":" in tag else f"{tag}:latest")
    meta = dict(ref.info.metadata) | {"tag": str(ref.tag)}
    if meta.get("kind") != "ppo":
        raise ValueError(f"{tag} is a {meta.get('kind')} model, not a registered policy")
    state = json.loads(Path(ref.path_of("state.json")).read_text(encoding="utf-8"))
    return GreedyPolicy(Path(ref.path_of("rl_module"))), Normalizer.from_dict(state["normalizer"]), meta
