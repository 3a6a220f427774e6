"""Ray Train and Ray Tune for the neural models.

``fit_with_ray`` runs the one epoch loop of ``training.neural`` in ``TorchTrainer`` workers
(``ScalingConfig``: 1 worker on this 2-core machine, a GPU when one is there), reporting a
checkpoint each epoch under ``storage``; running again with the same name resumes from the last
checkpoint. ``tune`` sweeps learning rate, width, depth, dropout and the loss weights with
Optuna's sampler and ASHA's early stopping; each trial runs the same loop body as a Train worker
in a Tune function trainable (Ray 2.60's Train V2 way of nesting a ``TorchTrainer`` per trial
costs 20-30 s a trial here, and on 2 CPUs a finished trial's worker group kept its placement
group long enough to time out the next trial's start).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from training.dataset import Normalizer, VIDataset
from training.nets import NetConfig
from training.neural import NeuralModel, TrainConfig, build_net, run_epochs, split_tensors

STATE_FILE = "state.pt"


def init_ray(address: str | None = None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=None if address == "local" else address)
    else:
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False)


def _payload(model: NeuralModel, train: VIDataset, validation: VIDataset) -> dict:
    """What a worker needs, as plain arrays (put once in the object store)."""
    return {
        "train": [t.numpy() for t in split_tensors(model.normalizer, train)],
        "validation": [t.numpy() for t in split_tensors(model.normalizer, validation)],
        "channels": list(train.channels),
        "normalizer": model.normalizer.to_dict(),
    }


def _train(config: dict, get_checkpoint, report_to, prepare_model, prepare_loader, device: str) -> None:
    """The one loop body of a Train worker and of a Tune trial: resume from the run's last
    checkpoint, train, report each epoch with a checkpoint."""
    import ray
    from ray.train import Checkpoint
    from torch.utils.data import DataLoader, TensorDataset

    from feature_repo.labels import HORIZONS_S

    data = ray.get(config["data"])
    net_config = NetConfig(**config["net"])
    train_config = TrainConfig(**config["train"])
    net = build_net(Normalizer.from_dict(data["normalizer"]), data["channels"], len(HORIZONS_S), net_config)
    start, optimizer = 0, None
    checkpoint = get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=True)
        net.load_state_dict(state["model"])
        start, optimizer = int(state["epoch"]), state["optimizer"]
    net = prepare_model(net)  # after loading: DDP prefixes the keys
    # the object store's arrays are read-only: the worker trains on its own copy
    train = [torch.from_numpy(np.array(a)) for a in data["train"]]
    validation = [torch.from_numpy(np.array(a)) for a in data["validation"]]
    loader = prepare_loader(
        DataLoader(TensorDataset(*train), batch_size=train_config.batch_size, shuffle=True)
    )

    def report(epoch: int, row: dict, state: dict) -> None:
        plain = getattr(net, "module", net)
        with tempfile.TemporaryDirectory() as d:
            saved = {"model": plain.state_dict(), "optimizer": state["optimizer"], "epoch": epoch}
            torch.save(saved, Path(d) / STATE_FILE)
            report_to(row, checkpoint=Checkpoint.from_directory(d))
        # progress on the driver's console (Ray forwards worker output there)
        print(
            f"epoch {epoch}/{train_config.epochs}: train loss {row['train_loss']:.4f}, "
            f"validation loss {row['val_loss']:.4f}, {row['samples']:,} samples",
            flush=True,
        )

    weights = net_config.loss_weights
    run_epochs(net, train, validation, train_config, weights, device, start, optimizer, report, loader)


def worker_loop(config: dict) -> None:
    """The TorchTrainer worker."""
    import ray.train
    import ray.train.torch as rtt

    device = str(rtt.get_device())
    _train(
        config, ray.train.get_checkpoint, ray.train.report, rtt.prepare_model, rtt.prepare_data_loader, device
    )


def trial_loop(config: dict) -> None:
    """A Tune trial: the same loop in the trial's own process."""
    from ray import tune

    _train(config, tune.get_checkpoint, tune.report, lambda net: net, lambda loader: loader, "cpu")


def _trainer(config: dict, storage: Path, name: str, use_gpu: bool, cpus: int):
    import ray.train
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        worker_loop,
        train_loop_config=config,
        # one worker with every CPU it is given (Ray sets its torch threads to that number)
        scaling_config=ray.train.ScalingConfig(
            num_workers=1,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": cpus} | ({"GPU": 1} if use_gpu else {}),
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
        ),
    )


def _load_best(model: NeuralModel, result, channels: list[str]) -> None:
    from feature_repo.labels import HORIZONS_S

    best = result.get_best_checkpoint(metric="val_loss", mode="min") or result.checkpoint
    with best.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, weights_only=True)
    model.build_for(channels, len(HORIZONS_S)).load_state_dict(state["model"])
    model.net.eval()


def fit_with_ray(
    model: NeuralModel,
    train: VIDataset,
    validation: VIDataset,
    storage: Path,
    name: str,
    address: str | None = None,
    use_gpu: bool | None = None,
    cpus: int | None = None,
) -> NeuralModel:
    """Fit ``model`` in a TorchTrainer; the best epoch's weights, calibrated on ``validation``.
    ``cpus`` for the worker: default this machine's CPUs, or 2 on a cluster."""
    import ray

    init_ray(address)
    model.normalizer = Normalizer.fit(train)
    use_gpu = torch.cuda.is_available() if use_gpu is None else use_gpu
    config = {
        "data": ray.put(_payload(model, train, validation)),
        "net": model.net_config.to_dict(),
        "train": model.train_config.to_dict(),
    }
    cpus = cpus or ((os.cpu_count() or 2) if address is None else 2)
    result = _trainer(config, storage, name, use_gpu, cpus).fit()
    model.history = (
        result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None else []
    )
    _load_best(model, result, train.channels)
    model.calibrate(validation)
    return model


def search_space(base: NetConfig) -> dict:
    from ray import tune

    return {
        "lr": tune.loguniform(2e-4, 3e-3),
        "width": tune.choice([32, 64, 96]),
        "depth": tune.choice([1, 2, 3]),
        "dropout": tune.uniform(0.0, 0.3),
        **{
            f"w_{k}": tune.uniform(0.1, 1.0)
            for k in base.loss_weights
            if k not in ("continuation", "rebound")
        },
    }


def _configs(params: dict, net: NetConfig, train: TrainConfig) -> tuple[NetConfig, TrainConfig]:
    weights = net.loss_weights | {k[2:]: v for k, v in params.items() if k.startswith("w_")}
    net = replace(
        net, width=int(params["width"]), depth=int(params["depth"]), dropout=float(params["dropout"])
    )
    return replace(net, loss_weights=weights), replace(train, lr=float(params["lr"]))


def tune(
    model: NeuralModel,
    train: VIDataset,
    validation: VIDataset,
    samples: int,
    storage: Path,
    name: str,
    address: str | None = None,
    seed: int = 0,
):
    """Sweep ``samples`` trials; returns (the trial table, the best trial's model, calibrated)."""
    import ray
    from ray import tune as rt
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    init_ray(address)
    model.normalizer = Normalizer.fit(train)
    data = ray.put(_payload(model, train, validation))
    base_net, base_train = model.net_config, model.train_config

    def trial(params: dict) -> None:
        net, tr = _configs(params, base_net, base_train)
        trial_loop({"data": data, "net": net.to_dict(), "train": tr.to_dict()})

    tuner = rt.Tuner(
        rt.with_resources(trial, {"cpu": 1}),
        param_space=search_space(base_net),
        tune_config=rt.TuneConfig(
            metric="val_loss",
            mode="min",
            num_samples=samples,
            scheduler=ASHAScheduler(max_t=base_train.epochs, grace_period=1, reduction_factor=2),
            search_alg=OptunaSearch(seed=seed),
        ),
        run_config=rt.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=1,  # the trial table as it progresses, not every trial's config and result
            checkpoint_config=rt.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
        ),
    )
    results = tuner.fit()
    if results.num_errors == len(results):
        raise RuntimeError(f"all {len(results)} trials failed; the first: {results.errors[0]}")
    table = results.get_dataframe()
    best = results.get_best_result()
    net, tr = _configs({k.removeprefix("config/"): v for k, v in best.config.items()}, base_net, base_train)
    chosen = NeuralModel(net, tr)
    chosen.normalizer = model.normalizer
    _load_best(chosen, best, train.channels)
    chosen.calibrate(validation)
    return table, chosen
