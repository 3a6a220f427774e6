"""The neural models: a Transformer (``VIReboundPredictor``) and an LSTM over the per-second panel
up to the decision, each joined with the tabular features, sharing one set of heads and one loss.

Heads: continuation and rebound logits per horizon (net of costs), the expected return in the VI's
direction per horizon (in percent), the entry second 0-9 and the cause (news, disclosure,
program, panic, none). Sequences are left-padded: the ``seq_mask`` channel marks real seconds, so
padding is masked out of attention and pooling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from training.dataset import CAUSES, ENTRY_SECONDS

RETURN_SCALE = 100.0  # returns are learned in percent: fractions are too small for a unit-scale loss


@dataclass(frozen=True)
class NetConfig:
    kind: str = "transformer"  # transformer | lstm
    width: int = 64
    depth: int = 2
    heads: int = 4
    dropout: float = 0.1
    seq_seconds: int = 160  # the last seconds of the panel the sequence encoder reads
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"continuation": 1.0, "rebound": 1.0, "ret": 0.5, "entry": 0.3, "cause": 0.3}
    )

    def to_dict(self) -> dict:
        return asdict(self)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions, counted back from the decision second (the last position is 0)."""

    def __init__(self, width: int, length: int) -> None:
        super().__init__()
        pos = torch.arange(length - 1, -1, -1, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
        pe = torch.zeros(length, width)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : width // 2]
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[-x.shape[1] :]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real seconds; ``mask`` (batch, seconds) is True where a second is real."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class VINet(nn.Module):
    """Sequence encoder + tabular MLP -> shared heads. ``mask_channel`` indexes ``seq_mask``."""

    def __init__(
        self, n_tabular: int, n_channels: int, mask_channel: int, n_horizons: int, config: NetConfig
    ) -> None:
        super().__init__()
        self.config, self.mask_channel = config, mask_channel
        w = config.width
        self.embed = nn.Linear(n_channels, w)
        if config.kind == "transformer":
            self.positions = PositionalEncoding(w, config.seq_seconds)
            layer = nn.TransformerEncoderLayer(
                w, config.heads, 2 * w, config.dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        elif config.kind == "lstm":
            self.encoder = nn.LSTM(
                w, w, config.depth, batch_first=True, dropout=config.dropout if config.depth > 1 else 0.0
            )
        else:
            raise ValueError(f"unknown model kind {config.kind!r}: transformer or lstm")
        self.tabular = nn.Sequential(
            nn.Linear(n_tabular, 2 * w), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(2 * w, w), nn.GELU()
        )
        self.trunk = nn.Sequential(nn.Linear(3 * w, 2 * w), nn.GELU(), nn.Dropout(config.dropout))
        self.heads = nn.ModuleDict(
            {
                "continuation": nn.Linear(2 * w, n_horizons),
                "rebound": nn.Linear(2 * w, n_horizons),
                "ret": nn.Linear(2 * w, n_horizons),
                "entry": nn.Linear(2 * w, ENTRY_SECONDS),
                "cause": nn.Linear(2 * w, len(CAUSES)),
            }
        )

    def forward(self, tabular: torch.Tensor, sequence: torch.Tensor) -> dict[str, torch.Tensor]:
        sequence = sequence[:, -self.config.seq_seconds :]
        mask = sequence[..., self.mask_channel] > 0
        h = self.embed(sequence)
        if self.config.kind == "transformer":
            # a row with no real second at all would make attention NaN: keep the decision second
            mask = mask.clone()
            mask[:, -1] = True
            h = self.encoder(self.positions(h), src_key_padding_mask=~mask)
            last = h[:, -1]
        else:
            h, _ = self.encoder(h * mask.unsqueeze(-1))
            last = h[:, -1]
        pooled = masked_mean(h, mask)
        z = self.trunk(torch.cat([pooled, last, self.tabular(tabular)], dim=-1))
        return {name: head(z) for name, head in self.heads.items()}


def loss(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum of the heads' losses; rows of unknown cause (-1) do not count for the cause head."""
    parts = {
        "continuation": F.binary_cross_entropy_with_logits(out["continuation"], y["continuation"]),
        "rebound": F.binary_cross_entropy_with_logits(out["rebound"], y["rebound"]),
        "ret": F.smooth_l1_loss(out["ret"], y["ret_dir"] * RETURN_SCALE),
        "entry": F.cross_entropy(out["entry"], y["entry"]),
    }
    known = y["cause"] >= 0
    parts["cause"] = (
        F.cross_entropy(out["cause"][known], y["cause"][known]) if known.any() else out["cause"].sum() * 0.0
    )
    return sum(weights.get(name, 0.0) * value for name, value in parts.items())


# the seed's name for the Transformer model: VINet with NetConfig(kind="transformer"), the default
VIReboundPredictor = VINet
