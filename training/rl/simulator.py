"""The RL simulator: one episode per VI event, one step per second from the first decision second
after the release, on backtest's one exchange loop (``backtest.runner``: latency, book walking,
call auctions, costs, fills heard at their acknowledgement) with one account.

The rules are the backtester's and the policy strategy's (``training.rl.policy``): a buy is sent
when its decision's data has reached us (``backtest.engine.decision_ready``), a sale on the whole
second; a position is held at most ``horizon_s`` from its fill (the holding clock starts there),
then sold; the episode ends once the entry window is over and nothing is held or working, and what
is still held when it ends is worth its bid net of exit costs (the account's equity).

Kept apart from observations, actions and rewards (``interpreters``, ``reward``) as qlib's
``qlib/rl`` keeps them, so that another RL library can drive the same simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backtest.engine import decision_ready
from backtest.execution import BUY, SELL, ExecutionConfig, Fill, OrderRequest, Venue
from backtest.runner import ExchangeLoop
from backtest.strategy import EventInfo
from backtest.tape import Tape
from market.krx.clock import US_PER_SECOND, seoul_date

CLOSE_GRACE_S = 300  # after the episode, how long a closing sell may take to fill (a VI, a limit lock)


@dataclass(frozen=True)
class Episode:
    """One VI event: its tape around the release (``tape_source``: the tape itself, or a
    :class:`training.rl.episodes.TapeRef` into the tape cache), and the normalised features of its
    decision seconds (row k: decision offset k) with their times."""

    event: EventInfo
    tape_source: object
    features: np.ndarray  # (decisions, features), float32
    decision_ts: np.ndarray  # (decisions,) µs
    outputs: np.ndarray | None = None  # a model's outputs per decision, when observed

    @property
    def tape(self) -> Tape:
        src = self.tape_source
        return src if isinstance(src, Tape) else src.open()


@dataclass(frozen=True)
class SimConfig:
    horizon_s: int = 60  # the longest a position is held, from its fill
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

    @property
    def max_steps(self) -> int:
        """The longest episode: the rest of the entry window, then a full holding."""
        return self.entry_window_s - self.start_s + self.horizon_s

    def time_through(self, k: int) -> float:
        """The share of the horizon gone at second k (counted from the first decision second)."""
        return (k - self.start_s) / max(self.horizon_s, 1)


class Simulator:
    """Steps of one second; ``buy`` opens one lot (flat, inside the entry window, cash allowing),
    ``sell`` closes the position (no short selling)."""

    def __init__(self, episode: Episode, config: SimConfig) -> None:
        self.ep, self.cfg = episode, config
        self.tape = episode.tape
        venue = Venue(self.tape, config.execution)
        self.loop = ExchangeLoop(lambda code, day: venue, config.execution, config.lot_notional * 1.5)
        self.start_cash = self.loop.account.cash
        self.fills: list[Fill] = []
        self.k = config.start_s  # seconds since the first decision second
        self.t = int(episode.decision_ts[0]) + self.k * US_PER_SECOND
        last_second = int(self.tape.ts[-1]) // US_PER_SECOND * US_PER_SECOND
        self.steps = max(1, min(config.max_steps, (last_second - self.t) // US_PER_SECOND))
        self.end_k = self.k + self.steps
        self.entry_price = 0.0
        self.entry_ts = 0  # the buy's fill: the holding clock
        self.start_price = self.mark()
        self._ended = False

    # state ---------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self.loop.position(self.ep.event.stock_code)

    @property
    def done(self) -> bool:
        return self._ended

    def mark(self, t: int | None = None) -> int:
        """What a share held is worth at ``t`` (now by default): the bid received by then (the
        last trade where none is shown)."""
        i = self.tape.seen_at(self.t if t is None else t)
        return int(self.tape.mark[i]) if i >= 0 else 0

    def equity(self) -> float:
        code = self.ep.event.stock_code
        return self.loop.account.equity({code: self.mark()}, seoul_date(self.t))

    def net_pnl(self) -> float:
        return self.equity() - self.start_cash

    def live(self, side: int | None = None) -> bool:
        return any(o.request.side == side or side is None for o in self.loop.open.values())

    def can_buy(self) -> bool:
        return self.position == 0 and not self.live() and self.k < self.cfg.entry_window_s

    def can_sell(self) -> bool:
        return self.position > 0 and not self.live(SELL)

    # moves ---------------------------------------------------------------------------------
    def buy(self, reason: str = "policy") -> bool:
        now = decision_ready(self.tape, self.t)  # as the backtester fires the decision
        price = self.tape.last_trade_at(now)
        qty = int(self.cfg.lot_notional // price) if price > 0 else 0
        if not self.can_buy() or qty <= 0:
            return False
        ev = self.ep.event
        placed = self.loop.submit(
            OrderRequest(ev.stock_code, BUY, qty, reason=reason, event_id=ev.event_id), now
        )
        return not isinstance(placed, str)

    def sell(self, reason: str = "policy") -> bool:
        if not self.can_sell():
            return False
        ev = self.ep.event
        req = OrderRequest(ev.stock_code, SELL, self.position, reason=reason, event_id=ev.event_id)
        return not isinstance(self.loop.submit(req, self.t), str)

    def advance(self) -> None:
        """One second on: the exchange works our orders up to the next step's time, and a
        holding past its horizon is sold."""
        self.t += US_PER_SECOND
        self.k += 1
        self._hear(self.t)
        held_out = self.entry_ts and self.t - self.entry_ts >= self.cfg.horizon_s * US_PER_SECOND
        if self.position > 0 and held_out and not self.live(SELL):
            self.sell("horizon")
        flat = self.position == 0 and not self.live()
        if (flat and self.k >= self.cfg.entry_window_s) or self.k >= self.end_k:
            self._ended = True
            self._close()

    def _hear(self, until: int) -> None:
        for report in self.loop.advance(until):
            if report.kind == "fill":
                self.fills.append(report.fill)
                if report.fill.side == BUY:
                    self.entry_price = report.fill.price
                    self.entry_ts = self.entry_ts or report.fill.fill_ts

    def _close(self) -> None:
        """After the episode: sell what is held, a second at a time, until it fills or the grace
        (or the tape) ends; what is left is counted at its bid by :meth:`equity`."""
        end = min(self.t + CLOSE_GRACE_S * US_PER_SECOND, int(self.tape.ts[-1]))
        while self.t <= end and (self.position > 0 or self.live()):
            if self.position > 0 and not self.live(SELL):
                self.sell("horizon")
            self.t += US_PER_SECOND
            self._hear(self.t)
