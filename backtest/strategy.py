"""The one strategy interface, for the backtester and the live executor alike (backtest = live, as
nautilus_trader does it: only the adapters that feed it and carry its orders differ).

A strategy receives, per VI event, what a trader at the screen would see at that moment:
- :class:`Decision`: at each decision second after the release, the causal features (from the
  feature store) and, where a model serves them, its outputs;
- :class:`MarketSecond`: a view of the stock on each whole second of the clock (the decisions'
  grid) while the strategy holds it or has orders working (last price, best quotes, program net
  buy, cumulative volume): a strategy that must see every print would make replay a per-tick
  Python loop, and the exits it needs (stops, time, program selling) read well once a second;
- its own fills, when their acknowledgements arrive;
and returns :class:`~backtest.execution.OrderRequest` and :class:`~backtest.execution.CancelRequest`
objects. It reads its position and cash from a :class:`Context` and never the future.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from backtest.execution import CancelRequest, Fill, OrderRequest

Action = OrderRequest | CancelRequest


@dataclass(frozen=True)
class EventInfo:
    """What is known of a VI at its release."""

    event_id: str
    stock_code: str
    market: str
    day: dt.date
    trigger_ts: int  # µs since the epoch
    release_ts: int
    direction: int  # +1 up, -1 down (상승 / 하락 VI)
    vi_type: str
    auction_price: int  # 단일가: the release's uncross price


@dataclass(frozen=True)
class Decision:
    event: EventInfo
    offset_s: int
    ts: int
    last_price: int  # the last trade at or before ``ts``
    features: Mapping[str, float]
    outputs: Mapping[str, float]  # a model's: see backtest.strategies.MODEL_OUTPUTS


@dataclass(frozen=True)
class MarketSecond:
    event: EventInfo
    ts: int
    last_price: int
    bid: int
    ask: int
    program_net_buy: int  # cumulative shares today (프로그램 순매수)
    cum_volume: int
    in_auction: bool


class Context(Protocol):
    """What a strategy may ask of the account and the broker."""

    @property
    def cash(self) -> float: ...

    def position(self, stock_code: str) -> int: ...

    def working(self, event_id: str) -> list[int]:
        """Client ids of this event's orders still live at the exchange (as far as we know)."""
        ...


class Strategy:
    """Base: every hook does nothing. ``notional`` is the KRW a new position is sized to."""

    name = "strategy"

    def __init__(self, notional: float = 5_000_000) -> None:
        self.notional = notional

    def on_decision(self, decision: Decision, ctx: Context) -> list[Action]:
        return []

    def on_second(self, market: MarketSecond, ctx: Context) -> list[Action]:
        return []

    def on_fill(self, fill: Fill, ctx: Context) -> list[Action]:
        return []

    def on_end(self, event: EventInfo, ctx: Context) -> list[Action]:
        """The event's window is over: what to do with what is left (by default nothing)."""
        return []
