"""Training the neural models: one epoch loop, used in-process (Tune trials, tests) and inside a
Ray Train worker (``training.ray_jobs``). Data goes through ``DataLoader`` batches of tensors built
once per split (no Python loop over rows)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from feature_repo.labels import HORIZONS_S
from training.dataset import MASK_CHANNEL, Normalizer, VIDataset
from training.models import Model, Predictions
from training.nets import RETURN_SCALE, NetConfig, VINet, loss

TARGET_NAMES = ("continuation", "rebound", "ret_dir", "entry", "cause")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without a better validation loss before stopping
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def split_tensors(normalizer: Normalizer, ds: VIDataset) -> list[torch.Tensor]:
    """tabular, sequence, then the targets in TARGET_NAMES order."""
    y = ds.targets()
    return [
        torch.from_numpy(normalizer.tabular(ds)),
        torch.from_numpy(normalizer.sequences(ds)),
        *(torch.from_numpy(y[name]) for name in TARGET_NAMES),
    ]


def _targets(batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(zip(TARGET_NAMES, batch[2:], strict=True))


def build_net(normalizer: Normalizer, channels: list[str], horizons: int, config: NetConfig) -> VINet:
    return VINet(len(normalizer.names), len(channels), channels.index(MASK_CHANNEL), horizons, config)


def validation_loss(net: VINet, data: list[torch.Tensor], weights: dict, device: str, batch: int) -> float:
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for b in DataLoader(TensorDataset(*data), batch_size=batch):
            b = [t.to(device) for t in b]
            total += float(loss(net(b[0], b[1]), _targets(b), weights)) * len(b[0])
            n += len(b[0])
    return total / n if n else 0.0


EpochReport = Callable[[int, dict, dict], None]  # epoch, metrics, the state dict after it


def run_epochs(
    net: torch.nn.Module,
    train: list[torch.Tensor],
    validation: list[torch.Tensor],
    config: TrainConfig,
    weights: dict[str, float],
    device: str = "cpu",
    start_epoch: int = 0,
    optimizer_state: dict | None = None,
    report: EpochReport | None = None,
    loader: DataLoader | None = None,
) -> tuple[dict, list[dict]]:
    """Train with AdamW, early stopping on the validation loss; returns the best state dict and
    the per-epoch history. ``loader`` replaces the default shuffled loader (Ray Train's sharded one)."""
    torch.manual_seed(config.seed + start_epoch)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if optimizer_state:
        opt.load_state_dict(optimizer_state)
    loader = loader or DataLoader(TensorDataset(*train), batch_size=config.batch_size, shuffle=True)
    best, best_state, stale, history = np.inf, copy.deepcopy(net.state_dict()), 0, []
    for epoch in range(start_epoch, config.epochs):
        net.train()
        seen, total = 0, 0.0
        for b in loader:
            b = [t.to(device) for t in b]
            opt.zero_grad()
            value = loss(net(b[0], b[1]), _targets(b), weights)
            value.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            total += value.item() * len(b[0])
            seen += len(b[0])
        val = validation_loss(net, validation, weights, device, config.batch_size)
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1), "val_loss": val, "samples": seen}
        history.append(row)
        if val < best - 1e-6:
            best, best_state, stale = val, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
        if report:
            report(epoch + 1, row, {"model": net.state_dict(), "optimizer": opt.state_dict()})
        if stale >= config.patience:
            break
    return best_state, history


def predict_net(net: VINet, tabular: np.ndarray, sequence: np.ndarray, batch: int = 1024) -> Predictions:
    net.eval()
    outs: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for i in range(0, len(tabular), batch):
            o = net(torch.from_numpy(tabular[i : i + batch]), torch.from_numpy(sequence[i : i + batch]))
            for k, v in o.items():
                outs.setdefault(k, []).append(v.numpy())
    cat = {k: np.concatenate(v) for k, v in outs.items()} if outs else {}
    if not cat:
        h = len(net.heads["continuation"].bias)
        return Predictions(*(np.zeros((0, n)) for n in (h, h, h, 10, 5)))

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return Predictions(
        1 / (1 + np.exp(-cat["continuation"])),
        1 / (1 + np.exp(-cat["rebound"])),
        cat["ret"] / RETURN_SCALE,
        softmax(cat["entry"]),
        softmax(cat["cause"]),
    )


class NeuralModel(Model):
    """The Transformer (``kind='transformer'``, ``VIReboundPredictor``) or the LSTM."""

    def __init__(self, net: NetConfig | None = None, train: TrainConfig | None = None) -> None:
        super().__init__()
        self.net_config = net or NetConfig()
        self.train_config = train or TrainConfig()
        self.kind = self.net_config.kind
        self.net: VINet | None = None
        self.history: list[dict] = []

    def build_for(self, channels: list[str], horizons: int) -> VINet:
        """A fresh network for these sequence channels (the normaliser names the tabular inputs)."""
        torch.manual_seed(self.train_config.seed)
        self.net = build_net(self.normalizer, channels, horizons, self.net_config)
        return self.net

    def _fit(self, train: VIDataset, validation: VIDataset) -> None:
        net = self.build_for(train.channels, len(HORIZONS_S))
        state, self.history = run_epochs(
            net,
            split_tensors(self.normalizer, train),
            split_tensors(self.normalizer, validation),
            self.train_config,
            self.net_config.loss_weights,
        )
        net.load_state_dict(state)

    def _predict(self, ds: VIDataset) -> Predictions:
        return predict_net(self.net, self.normalizer.tabular(ds), self.normalizer.sequences(ds))
