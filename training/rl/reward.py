"""The reward: the change of the account's net equity over a step (cash after every cost, the
holding marked at the last trade), in units of the lot, less a penalty on each new low of the
drawdown from the episode's peak. With no penalty the rewards of an episode sum to its net P&L
after costs over the lot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Reward:
    lot_notional: float
    drawdown_weight: float = 0.1
    _equity: float = 0.0
    _peak: float = 0.0
    _drawdown: float = 0.0

    def reset(self, equity: float) -> None:
        self._equity = self._peak = equity
        self._drawdown = 0.0

    def __call__(self, equity: float) -> float:
        change = (equity - self._equity) / self.lot_notional
        self._peak = max(self._peak, equity)
        drawdown = (self._peak - equity) / self.lot_notional
        deeper = max(0.0, drawdown - self._drawdown)
        self._equity, self._drawdown = equity, max(self._drawdown, drawdown)
        return change - self.drawdown_weight * deeper
