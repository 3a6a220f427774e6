"""Model training and inference speed on CPU (a GPU when torch sees one): samples per second and
seconds per epoch of the Transformer and the LSTM at 10,000 VI events (the model inputs of the
real feature service: 134 tabular features, 240 seconds x 9 channels), beside LightGBM fitted on
the same rows in the same run; and one decision's inference latency at batch 1 in-process."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import publish
from training.dataset import VIDataset, walk_forward
from training.models import LightGBM
from training.nets import NetConfig
from training.neural import NeuralModel, TrainConfig, run_epochs, split_tensors
from training.planted import planted

EVENTS = 10_000
LATENCY_CALLS = 300


def _latency_ms(fn, calls: int = LATENCY_CALLS) -> tuple[float, float]:
    for _ in range(20):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    ds = planted(events=EVENTS, days=20, noise_features=133, decisions=1)
    fold = walk_forward(ds.days, purge_days=0)[0]
    train, val = ds.on_days(fold.train), ds.on_days(fold.validation)
    test = ds.on_days(fold.test)
    one = VIDataset(
        test.frame.iloc[:1].reset_index(drop=True), test.tabular, test.sequences[:1], test.channels
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    rows, models = [], {}
    for kind in ("transformer", "lstm"):
        model = NeuralModel(NetConfig(kind=kind), TrainConfig(epochs=1))
        model.fit(val, val)  # the normaliser and the network, quickly; the timed epoch follows
        net = model.net.to(device)
        t0 = time.perf_counter()
        _, history = run_epochs(
            net,
            split_tensors(model.normalizer, train),
            split_tensors(model.normalizer, val),
            model.train_config,
            model.net_config.loss_weights,
            device,
        )
        seconds = time.perf_counter() - t0
        net.to("cpu")
        models[kind] = model
        samples = history[0]["samples"]
        rows.append(
            {"model": kind, "device": device, "train rows": samples, "s per epoch": seconds,
             "samples/s": samples / seconds}
        )  # fmt: skip
    t0 = time.perf_counter()
    models["lightgbm (baseline)"] = LightGBM().fit(train, val)
    seconds = time.perf_counter() - t0
    rows.append({"model": "lightgbm (baseline)", "device": "cpu", "train rows": len(train),
                 "s per epoch": seconds, "samples/s": len(train) / seconds})  # fmt: skip
    # one decision at a time, as the model service answers it, with torch's default threads and
    # with one (a service running a worker per core would set that)
    for row in rows:
        model = models[row["model"]]
        for n in (threads, 1):
            torch.set_num_threads(n)
            p50, p99 = _latency_ms(lambda model=model: model.predict(one))
            row[f"predict p50 ms ({n} thr)"], row[f"p99 ms ({n} thr)"] = p50, p99
    torch.set_num_threads(threads)
    publish(
        "training",
        f"Training and inference, {EVENTS:,} VI events (134 features, 240 s x 9 channels)",
        rows,
        {
            "LightGBM row": "a whole fit (14 boosters, early stopping) in the 's per epoch' column",
            "predict": "one decision through Model.predict (normalise, network, calibration), in-process",
            "thr": "torch intra-op threads while predicting",
        },
    )
