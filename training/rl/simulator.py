"""The RL simulator: one episode per VI event, one step per second from the first decision second
after the release, replaying the recorded market through the execution model of ``backtest/``
(latency, book walking, call auctions, costs), with one account.

Kept apart from observations, actions and rewards (``interpreters``, ``reward``) as qlib's
``qlib/rl`` keeps them, so that another RL library can drive the same simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backtest.execution import (
    BUY,
    SELL,
    Account,
    ExecutionConfig,
    Fill,
    Order,
    OrderRequest,
    Venue,
    new_order,
)
from backtest.strategy import EventInfo
from backtest.tape import Tape
from market.krx.clock import US_PER_SECOND

CLOSE_GRACE_S = 300  # after the horizon, how long a closing sell may take to fill (a VI, a limit lock)


@dataclass(frozen=True)
class Episode:
    """One VI event: its tape around the release, and the normalised features of its decision
    seconds (row k: decision offset k) with their times."""

    event: EventInfo
    tape: Tape
    features: np.ndarray  # (decisions, features), float32
    decision_ts: np.ndarray  # (decisions,) µs
    outputs: np.ndarray | None = None  # a model's outputs per decision, when observed


@dataclass(frozen=True)
class SimConfig:
    horizon_s: int = 60  # steps: seconds from the start
    entry_window_s: int = 10  # new positions only at these first seconds (the decision seconds)
    start_s: int = 0  # the episode starts this many seconds after the first decision second
    lot_notional: float = 5_000_000.0  # KRW of the fixed lot
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def to_dict(self) -> dict:
        e = self.execution
        return {
            "start_s": self.start_s,
            "horizon_s": self.horizon_s,
            "entry_window_s": self.entry_window_s,
            "lot_notional": self.lot_notional,
            "entry_latency_us": e.entry_latency_us,
            "response_latency_us": e.response_latency_us,
            "queue_model": str(e.queue_model),
            "brokerage_rate": e.brokerage_rate,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SimConfig:
        keys = ("entry_latency_us", "response_latency_us", "queue_model", "brokerage_rate")
        execution = ExecutionConfig(**{k: d[k] for k in keys if k in d})
        shape = {k: d[k] for k in ("horizon_s", "entry_window_s", "start_s", "lot_notional") if k in d}
        return cls(**shape, execution=execution)

    def __post_init__(self) -> None:
        if not 0 <= self.start_s < self.entry_window_s:
            raise ValueError(
                f"start_s must lie in the entry window 0-{self.entry_window_s - 1}, got {self.start_s}"
            )

    def time_through(self, k: int) -> float:
        """The share of the horizon gone at second k (counted from the first decision second)."""
        return (k - self.start_s) / max(self.horizon_s, 1)


class Simulator:
    """Steps of one second; ``buy`` opens one lot (flat, inside the entry window, cash allowing),
    ``sell`` closes the position (no short selling); after the last step the position is sold."""

    def __init__(self, episode: Episode, config: SimConfig) -> None:
        self.ep, self.cfg = episode, config
        self.venue = Venue(episode.tape, config.execution)
        self.account = Account(config.lot_notional * 1.5)  # one lot, its costs, room for a price jump
        self.start_cash = self.account.cash
        self.orders: list[Order] = []
        self.fills: list[Fill] = []
        self.k = config.start_s  # seconds since the first decision second
        self.t = int(episode.decision_ts[0]) + self.k * US_PER_SECOND
        last_second = int(episode.tape.ts[-1]) // US_PER_SECOND * US_PER_SECOND
        self.steps = max(1, min(config.horizon_s, (last_second - self.t) // US_PER_SECOND))
        self.end_k = self.k + self.steps
        self.entry_price = 0.0
        self.start_price = self.mark()

    # state ---------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.account.positions.get(self.ep.event.stock_code, 0)

    @property
    def done(self) -> bool:
        return self.k >= self.end_k

    def mark(self, t: int | None = None) -> int:
        """The last trade at or before ``t`` (now by default)."""
        return self.ep.tape.last_trade_at(self.t if t is None else t)

    def equity(self) -> float:
        return self.account.cash + self.position * self.mark()

    def net_pnl(self) -> float:
        return self.equity() - self.start_cash

    def live(self, side: int | None = None) -> bool:
        return any(o.live and (side is None or o.request.side == side) for o in self.orders)

    def can_buy(self) -> bool:
        return self.position == 0 and not self.live() and self.k < self.cfg.entry_window_s

    def can_sell(self) -> bool:
        return self.position > 0 and not self.live(SELL)

    # moves ---------------------------------------------------------------------------------
    def buy(self, reason: str = "policy") -> bool:
        price = self.mark()
        qty = int(self.cfg.lot_notional // price) if price > 0 else 0
        if not self.can_buy() or qty <= 0:
            return False
        self._send(
            OrderRequest(self.ep.event.stock_code, BUY, qty, reason=reason, event_id=self.ep.event.event_id)
        )
        return True

    def sell(self, reason: str = "policy") -> bool:
        if not self.can_sell():
            return False
        req = OrderRequest(
            self.ep.event.stock_code, SELL, self.position, reason=reason, event_id=self.ep.event.event_id
        )
        self._send(req)
        return True

    def _send(self, request: OrderRequest) -> None:
        self.orders.append(new_order(request, self.t, self.cfg.execution))

    def advance(self) -> None:
        """One second on: the exchange works our orders up to the next step's time."""
        self.t += US_PER_SECOND
        self.k += 1
        self._exchange(self.t)
        if self.done:
            self._close()

    def _exchange(self, until: int) -> None:
        for order in self.orders:
            if order.status == "sent" and order.arrival_ts <= until:
                for f in self.venue.arrive(order):
                    self._apply(f)
            while order.live and order.status != "sent":
                pending = self.venue.next_fill(order, until)
                if pending is None:
                    break
                self._apply(self.venue.take(pending))

    def _apply(self, fill: Fill) -> None:
        self.account.apply(fill)
        self.fills.append(fill)
        if fill.side == BUY:
            self.entry_price = fill.price

    def _close(self) -> None:
        """After the horizon: sell what is held, a second at a time, until it fills or the tape ends."""
        end = min(self.t + CLOSE_GRACE_S * US_PER_SECOND, int(self.ep.tape.ts[-1]))
        while self.t <= end and (self.position > 0 or self.live()):
            if self.position > 0 and not self.live(SELL):
                self.sell("horizon")
            self.t += US_PER_SECOND
            self._exchange(self.t)
