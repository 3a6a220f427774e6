"""A stock-day of recorded market events as arrays: what the execution model replays our orders
against. It needs only what users have (trades and the 10-level book, from vendor files, KIS
recordings or the synthetic market), never order-by-order flow.

Each row's ``phase`` is the market's state *after* the row: continuous trading, a call auction
running (a VI's, the opening or the closing call) or closed. An auction ends at its uncross print
(a trade with no aggressor side).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from market import krx
from market.krx.dataset import read_accepted, tick_file

LEVELS = 10
KIND = {"trade": 0, "book": 1, "indicative": 2, "status": 3}
TRADE = KIND["trade"]
PHASE_CLOSED, PHASE_CONTINUOUS, PHASE_AUCTION = 0, 1, 2
AUCTION_SESSIONS = ("opening_auction", "closing_auction")
BOOK_COLUMNS = [
    f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "volume") for i in range(1, LEVELS + 1)
]
COLUMNS = [
    "timestamp",
    "event_type",
    "price",
    "volume",
    "cum_volume",
    "side",
    *BOOK_COLUMNS,
    "program_net_buy",
    "vi_status",
    "session",
]


@dataclass(frozen=True)
class Tape:
    """One stock-day, time-ordered. Book arrays are (rows, 10), best level first, 0 where a level is
    empty; a row without any book (a trade-only feed) carries the last book forward."""

    stock_code: str
    day: dt.date
    market: str
    lower_limit: int  # 하한가
    upper_limit: int  # 상한가
    ts: np.ndarray  # µs since the epoch
    kind: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    side: np.ndarray  # 1 buy aggressor, -1 sell aggressor, 0 auction
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray
    phase: np.ndarray
    last_price: np.ndarray  # last trade price up to the row (0 before the first)
    cum_volume: np.ndarray
    program_net_buy: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def index_at(self, t_us: int) -> int:
        """The last row at or before ``t_us`` (-1 before the first): the market an order arriving at
        ``t_us`` sees."""
        return int(np.searchsorted(self.ts, t_us, side="right")) - 1

    def last_trade_at(self, t_us: int) -> int:
        """The last trade price at or before ``t_us`` (0 before any)."""
        i = self.index_at(t_us)
        return int(self.last_price[i]) if i >= 0 else 0

    def is_uncross(self, i: int) -> bool:
        return self.kind[i] == TRADE and self.side[i] == 0

    def auction_end(self, t_us: int) -> int:
        """``t_us``, or the uncross of the call auction running then (the tape's end if none follows)."""
        i = self.index_at(t_us)
        if i < 0 or self.phase[i] != PHASE_AUCTION:
            return t_us
        later = np.flatnonzero((self.kind[i + 1 :] == TRADE) & (self.side[i + 1 :] == 0))
        return int(self.ts[i + 1 + later[0]]) if len(later) else int(self.ts[-1])

    def window(self, start_us: int, end_us: int) -> Tape:
        """The rows from the last one at or before ``start_us`` (the market then) to ``end_us``."""
        lo = max(self.index_at(start_us), 0)
        hi = self.index_at(end_us) + 1
        # copies, not views: a window (an RL episode) outlives the day's tape it was cut from
        arrays = {f: getattr(self, f)[lo:hi].copy() for f in ARRAY_FIELDS}
        return replace(self, **arrays)


def phases(kind: np.ndarray, side: np.ndarray, vi_status: np.ndarray, session: np.ndarray) -> np.ndarray:
    """The market's state after each row (see the module doc)."""
    out = np.full(len(kind), PHASE_CONTINUOUS, dtype=np.int8)
    out[np.isin(session, AUCTION_SESSIONS) | (vi_status == 1)] = PHASE_AUCTION
    out[~np.isin(session, (*AUCTION_SESSIONS, "continuous"))] = PHASE_CLOSED
    uncross = (kind == TRADE) & (side == 0)
    out[uncross] = np.where(session[uncross] == "closing_auction", PHASE_CLOSED, PHASE_CONTINUOUS)
    return out


def _carry_books(*books: np.ndarray) -> tuple[np.ndarray, ...]:
    has = (books[0][:, 0] > 0) | (books[2][:, 0] > 0)
    src = np.maximum.accumulate(np.where(has, np.arange(len(has)), 0))
    return tuple(b[src] for b in books)


def tape_from_table(table: pa.Table, stock_code: str, stock_day) -> Tape:
    """A tape from one stock-day's tick rows (columns of :data:`COLUMNS`, time-ordered);
    ``stock_day``: its :class:`market.events.detector.StockDay`."""
    col = {c: table[c].to_numpy(zero_copy_only=False) for c in COLUMNS if c != "timestamp"}
    ts = krx.series_us(table["timestamp"].to_pandas()).to_numpy(dtype=np.int64)
    kind = np.full(len(ts), -1, dtype=np.int8)
    for name, code in KIND.items():
        kind[col["event_type"] == name] = code

    def book(s: str, k: str) -> np.ndarray:
        return np.stack([col[f"{s}_{k}_{i}"] for i in range(1, LEVELS + 1)], axis=1).astype(np.int64)

    bid_px, bid_qty, ask_px, ask_qty = _carry_books(
        book("bid", "price"), book("bid", "volume"), book("ask", "price"), book("ask", "volume")
    )
    price = col["price"].astype(np.int64)
    traded = np.where(kind == TRADE, np.arange(len(ts)), -1)
    last = np.maximum.accumulate(traded) if len(ts) else traded
    last_price = np.where(last >= 0, price[np.maximum(last, 0)], 0)
    lower, upper = krx.price_limits(stock_day.base_price, stock_day.market, stock_day.day)
    return Tape(
        stock_code,
        stock_day.day,
        stock_day.market,
        lower,
        upper,
        ts,
        kind,
        price,
        col["volume"].astype(np.int64),
        col["side"].astype(np.int8),
        bid_px,
        bid_qty,
        ask_px,
        ask_qty,
        phases(kind, col["side"], col["vi_status"], col["session"].astype(str)),
        last_price,
        col["cum_volume"].astype(np.int64),
        col["program_net_buy"].astype(np.int64),
    )


def load_tape(root: Path, stock_code: str, stock_day) -> Tape:
    """The accepted rows (validation's quarantine left out) of one stock-day of a dataset root."""
    path = tick_file(root, stock_day.day, stock_code)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ticks for {stock_code} on {stock_day.day}")
    return tape_from_table(read_accepted(root, path, COLUMNS), stock_code, stock_day)


ARRAY_FIELDS = [
    f.name
    for f in fields(Tape)
    if f.name not in ("stock_code", "day", "market", "lower_limit", "upper_limit")
]
_BOOK_FIELDS = {
    "bid_px": "bid_price",
    "bid_qty": "bid_volume",
    "ask_px": "ask_price",
    "ask_qty": "ask_volume",
}


@functools.cache
def _phase_of(kind: int, side: int, vi_status: int, session: str) -> int:
    """:func:`phases` of one row (a handful of distinct rows: computed once each)."""
    return int(phases(np.array([kind]), np.array([side]), np.array([vi_status]), np.array([session]))[0])


class LiveTape:
    """One stock-day's tape growing a tick row at a time, as the live feed delivers it: the live
    executor's market view and what its simulated broker's :class:`~backtest.execution.Venue`
    matches against (the same arrays as a recorded :class:`Tape`, so the same execution model).
    :meth:`tape` gives the rows so far as a :class:`Tape` of views (no copy)."""

    def __init__(self, stock_code: str, stock_day, capacity: int = 4096) -> None:
        lower, upper = krx.price_limits(stock_day.base_price, stock_day.market, stock_day.day)
        self._meta = (stock_code, stock_day.day, stock_day.market, lower, upper)
        self._n = 0
        self._a = {
            f: np.zeros((capacity, LEVELS) if f in _BOOK_FIELDS else capacity, np.int64) for f in ARRAY_FIELDS
        }
        self._a["kind"] = self._a["kind"].astype(np.int8)
        self._a["side"] = self._a["side"].astype(np.int8)
        self._a["phase"] = self._a["phase"].astype(np.int8)

    def __len__(self) -> int:
        return self._n

    def append(self, row: dict) -> None:
        """One tick row (the tick schema's fields; ``timestamp`` a datetime or µs)."""
        n, a = self._n, self._a
        if n == len(a["ts"]):
            self._a = a = {f: np.concatenate([v, np.zeros_like(v)]) for f, v in a.items()}
        ts = row["timestamp"]
        kind = KIND[row["event_type"]]
        a["ts"][n] = ts if isinstance(ts, int) else krx.epoch_us(ts)
        a["kind"][n], a["price"][n], a["volume"][n], a["side"][n] = (
            kind,
            row["price"],
            row["volume"],
            row["side"],
        )
        if row["bid_price_1"] > 0 or row["ask_price_1"] > 0:
            for f, name in _BOOK_FIELDS.items():
                a[f][n] = [row[f"{name}_{i}"] for i in range(1, LEVELS + 1)]
        elif n:  # a row without a book carries the last one
            for f in _BOOK_FIELDS:
                a[f][n] = a[f][n - 1]
        a["phase"][n] = phases(
            np.array([kind]),
            np.array([row["side"]]),
            np.array([row["vi_status"]]),
            np.array([row["session"]]),
        )[0]
        a["last_price"][n] = row["price"] if kind == TRADE else (a["last_price"][n - 1] if n else 0)
        a["cum_volume"][n], a["program_net_buy"][n] = row["cum_volume"], row["program_net_buy"]
        self._n = n + 1

    def tape(self) -> Tape:
        return Tape(*self._meta, **{f: v[: self._n] for f, v in self._a.items()})
