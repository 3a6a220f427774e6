"""A stock-day of recorded market events as arrays: what the execution model replays our orders
against. It needs only what users have (trades and the 10-level book, from vendor files, KIS
recordings or the synthetic market), never order-by-order flow.

Every row carries two clocks (``backtest.clock``): ``ts``, the exchange's time (matching), and
``local_ts``, when it reached us (what a strategy may see). Each row's ``phase`` is the market's
state *after* the row: continuous trading, a call auction running (a VI's, the opening or the
closing call) or closed. An auction ends at its uncross print (a trade with no aggressor side).

Only books the market showed: ``book[i]`` is the book row i brought (an index into ``books``, each
distinct consecutive book stored once), or -1 when it brought none (a trade, a status row): the
book is then unknown until a fresh one arrives, never carried across a row that changed it or
across the uncross that ended an auction. What a trader's screen still shows (the last book of the
same phase) is ``shown``; a holding's honest value is ``mark`` (the best bid shown in continuous
trading, the latest indicative price in a call auction, else the last trade).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from backtest.clock import FeedClock, one_row, two_clocks
from market import krx
from market.krx.dataset import read_accepted, tick_file

LEVELS = 10
KIND = {"trade": 0, "book": 1, "indicative": 2, "status": 3}
TRADE, BOOK, INDICATIVE = KIND["trade"], KIND["book"], KIND["indicative"]
PHASE_CLOSED, PHASE_CONTINUOUS, PHASE_AUCTION = 0, 1, 2
AUCTION_SESSIONS = ("opening_auction", "closing_auction")
BID_PX, BID_QTY, ASK_PX, ASK_QTY = range(4)  # the planes of ``Tape.books``
BOOK_COLUMNS = [
    f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "volume") for i in range(1, LEVELS + 1)
]
_PLANES = ("bid_price", "bid_volume", "ask_price", "ask_volume")  # in the order of BID_PX..ASK_QTY
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
RECV_COLUMN = "recv_ts"


@dataclass(frozen=True)
class Tape:
    """One stock-day (or a stretch of one), time-ordered. Integer times are µs since the epoch."""

    stock_code: str
    day: dt.date
    market: str
    kospi200: bool
    base_price: int  # 기준가
    lower_limit: int  # 하한가
    upper_limit: int  # 상한가
    ts: np.ndarray  # int64: the exchange's time
    local_ts: np.ndarray  # int64: when we received it
    kind: np.ndarray  # int8: KIND
    price: np.ndarray  # int32
    volume: np.ndarray  # int32
    side: np.ndarray  # int8: 1 buy aggressor, -1 sell aggressor, 0 auction
    phase: np.ndarray  # int8
    last_price: np.ndarray  # int32: last trade price up to the row (0 before the first)
    static_ref: np.ndarray  # int32: 정적 VI 기준가 (the last single-price print, else the base price)
    mark: np.ndarray  # int32: what a holding is worth at the row (see the module doc)
    cum_volume: np.ndarray  # int64
    program_net_buy: np.ndarray  # int64
    book: np.ndarray  # int32: the book the row brought (-1: none)
    shown: np.ndarray  # int32: the last book of the same phase at or before the row (-1: none)
    books: np.ndarray  # int32 (books, 4, LEVELS): BID_PX, BID_QTY, ASK_PX, ASK_QTY, best level first

    def __len__(self) -> int:
        return len(self.ts)

    def index_at(self, t_us: int) -> int:
        """The last row at or before exchange time ``t_us`` (-1 before the first): the market an
        order reaching the exchange at ``t_us`` meets."""
        return int(np.searchsorted(self.ts, t_us, side="right")) - 1

    def seen_at(self, t_us: int) -> int:
        """The last row received at or before local time ``t_us`` (-1 before the first): all a
        strategy deciding at ``t_us`` may know."""
        return int(np.searchsorted(self.local_ts, t_us, side="right")) - 1

    def last_trade_at(self, t_us: int) -> int:
        """The last trade price received at or before local time ``t_us`` (0 before any)."""
        i = self.seen_at(t_us)
        return int(self.last_price[i]) if i >= 0 else 0

    def quotes(self, i: int) -> tuple[int, int]:
        """(best bid, best ask) a screen shows at row i (0 where unknown)."""
        b = int(self.shown[i]) if i >= 0 else -1
        if b < 0:
            return 0, 0
        return int(self.books[b, BID_PX, 0]), int(self.books[b, ASK_PX, 0])

    def is_uncross(self, i: int) -> bool:
        return self.kind[i] == TRADE and self.side[i] == 0

    def auction_end(self, t_us: int) -> int:
        """``t_us``, or the uncross of the call auction running then (the tape's end if none follows)."""
        i = self.index_at(t_us)
        if i < 0 or self.phase[i] != PHASE_AUCTION:
            return t_us
        step = 4096  # look ahead a block at a time: a mapped tape is read only as far as needed
        for lo in range(i + 1, len(self), step):
            block = slice(lo, lo + step)
            later = np.flatnonzero((self.kind[block] == TRADE) & (self.side[block] == 0))
            if len(later):
                return int(self.ts[lo + later[0]])
        return int(self.ts[-1])

    def rows(self, lo: int, hi: int) -> Tape:
        """Rows ``lo..hi-1`` as views (no copy; ``books`` is shared)."""
        return replace(self, **{f: getattr(self, f)[lo:hi] for f in ROW_FIELDS})

    def window(self, start_us: int, end_us: int) -> Tape:
        """The rows from the last one at or before exchange time ``start_us`` (the market then) to
        ``end_us``, as views."""
        return self.rows(max(self.index_at(start_us), 0), self.index_at(end_us) + 1)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).nbytes for f in (*ROW_FIELDS, "books"))


META_FIELDS = ("stock_code", "day", "market", "kospi200", "base_price", "lower_limit", "upper_limit")
ROW_FIELDS = tuple(f.name for f in fields(Tape) if f.name not in (*META_FIELDS, "books"))
ROW_DTYPES = {
    "ts": np.int64,
    "local_ts": np.int64,
    "kind": np.int8,
    "price": np.int32,
    "volume": np.int32,
    "side": np.int8,
    "phase": np.int8,
    "last_price": np.int32,
    "static_ref": np.int32,
    "mark": np.int32,
    "cum_volume": np.int64,
    "program_net_buy": np.int64,
    "book": np.int32,
    "shown": np.int32,
}


def phases(kind: np.ndarray, side: np.ndarray, vi_status: np.ndarray, session: np.ndarray) -> np.ndarray:
    """The market's state after each row (see the module doc)."""
    out = np.full(len(kind), PHASE_CONTINUOUS, dtype=np.int8)
    out[np.isin(session, AUCTION_SESSIONS) | (vi_status == 1)] = PHASE_AUCTION
    out[~np.isin(session, (*AUCTION_SESSIONS, "continuous"))] = PHASE_CLOSED
    uncross = (kind == TRADE) & (side == 0)
    out[uncross] = np.where(session[uncross] == "closing_auction", PHASE_CLOSED, PHASE_CONTINUOUS)
    return out


def _segment_fill(values: np.ndarray, present: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``values`` carried forward over rows where ``present`` is false, never across a segment
    start (``starts``: true on a segment's first row); -1 where nothing was present yet."""
    n = len(values)
    idx = np.where(present, np.arange(n), -1)
    last = np.maximum.accumulate(idx) if n else idx
    seg_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else idx
    ok = last >= seg_start
    return np.where(ok, values[np.maximum(last, 0)], -1)


def derived_columns(kind, price, side, phase, own_book, books, base_price) -> dict[str, np.ndarray]:
    """last_price, static_ref, shown and mark of rows whose kind, price, side, phase and own book
    are known (the one vectorised definition; :class:`LiveTape` keeps the same per row)."""
    n = len(kind)
    traded = kind == TRADE
    last = _segment_fill(price, traded, np.zeros(n, bool))
    uncross = traded & (side == 0)
    static = _segment_fill(price, uncross, np.zeros(n, bool))
    starts = np.r_[True, phase[1:] != phase[:-1]] if n else np.zeros(0, bool)
    shown = _segment_fill(own_book, own_book >= 0, starts)
    indicative = _segment_fill(price, (kind == INDICATIVE) & (price > 0), starts)
    bid = np.where(shown >= 0, books[np.maximum(shown, 0), BID_PX, 0], 0) if len(books) else np.zeros(n)
    last_price = np.maximum(last, 0)
    mark = np.where((phase == PHASE_CONTINUOUS) & (bid > 0), bid, last_price)
    mark = np.where((phase == PHASE_AUCTION) & (indicative > 0), indicative, mark)
    return {
        "last_price": last_price,
        "static_ref": np.where(static > 0, static, base_price),
        "shown": shown,
        "mark": mark,
    }


def stack_books(planes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(own book index per row, the distinct consecutive books) from the four (rows, LEVELS) planes."""
    stacked = np.stack(planes, axis=1).astype(np.int32)  # rows, 4, LEVELS
    has = (stacked[:, BID_PX, 0] > 0) | (stacked[:, ASK_PX, 0] > 0)
    rows = np.flatnonzero(has)
    mine = stacked[rows]
    new = np.ones(len(rows), bool)
    if len(rows) > 1:
        new[1:] = np.any(mine[1:] != mine[:-1], axis=(1, 2))
    book = np.full(len(has), -1, np.int32)
    book[rows] = np.cumsum(new) - 1
    return book, np.ascontiguousarray(mine[new])


def tape_from_table(table: pa.Table, stock_code: str, stock_day, clock: FeedClock | None = None) -> Tape:
    """A tape from one stock-day's tick rows (columns of :data:`COLUMNS`, and ``recv_ts`` where the
    data has it; in feed order); ``stock_day``: its :class:`market.events.detector.StockDay`."""
    clock = clock or FeedClock()
    col = {c: table[c].to_numpy(zero_copy_only=False) for c in COLUMNS if c != "timestamp"}
    stamps = us_column(table["timestamp"])
    received = us_column(table[RECV_COLUMN]) if RECV_COLUMN in table.column_names else None
    exch, local = two_clocks(stamps, received, clock)
    kind = np.full(len(stamps), -1, dtype=np.int8)
    for name, code in KIND.items():
        kind[col["event_type"] == name] = code
    planes = [
        np.stack([col[f"{p}_{i}"] for i in range(1, LEVELS + 1)], axis=1) if len(stamps) else
        np.zeros((0, LEVELS), np.int64)
        for p in _PLANES
    ]  # fmt: skip
    book, books = stack_books(planes)
    side = col["side"].astype(np.int8)
    phase = phases(kind, side, col["vi_status"], col["session"].astype(str))
    price = col["price"].astype(np.int32)
    arrays = {
        "ts": exch,
        "local_ts": local,
        "kind": kind,
        "price": price,
        "volume": col["volume"],
        "side": side,
        "phase": phase,
        "cum_volume": col["cum_volume"],
        "program_net_buy": col["program_net_buy"],
        "book": book,
        **derived_columns(kind, price, side, phase, book, books, stock_day.base_price),
    }
    return make_tape(stock_code, stock_day, arrays, books)


def us_column(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as µs since the epoch (-1 where null), whatever its unit."""
    us = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(-1)
    return us.to_numpy()


def make_tape(stock_code: str, stock_day, arrays: dict[str, np.ndarray], books: np.ndarray) -> Tape:
    """A :class:`Tape` of a stock-day from its row arrays (cast to the tape's types) and books."""
    lower, upper = krx.price_limits(stock_day.base_price, stock_day.market, stock_day.day)
    rows = {f: np.asarray(arrays[f]).astype(ROW_DTYPES[f], copy=False) for f in ROW_FIELDS}
    return Tape(
        stock_code, stock_day.day, stock_day.market, bool(stock_day.kospi200), int(stock_day.base_price),
        lower, upper, **rows, books=np.asarray(books, np.int32).reshape(-1, 4, LEVELS),
    )  # fmt: skip


def has_receive_times(path: Path) -> bool:
    """The tick file records when each row was received (KIS recordings, the synthetic market)."""
    return RECV_COLUMN in pq.read_schema(path).names


def read_columns(path: Path) -> list[str]:
    """The tape's columns a tick file has (``recv_ts`` where the source recorded it)."""
    return [*COLUMNS, RECV_COLUMN] if has_receive_times(path) else COLUMNS


def load_tape(root: Path, stock_code: str, stock_day, clock: FeedClock | None = None) -> Tape:
    """The accepted rows (validation's quarantine left out) of one stock-day of a dataset root."""
    path = tick_file(root, stock_day.day, stock_code)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ticks for {stock_code} on {stock_day.day}")
    return tape_from_table(read_accepted(root, path, read_columns(path)), stock_code, stock_day, clock)


@functools.cache
def _phase_of(kind: int, side: int, vi_status: int, session: str) -> int:
    """:func:`phases` of one row (a handful of distinct rows: computed once each)."""
    return int(phases(np.array([kind]), np.array([side]), np.array([vi_status]), np.array([session]))[0])


class LiveTape:
    """One stock-day's tape growing a tick row at a time, as the live feed delivers it: the live
    executor's market view and what its simulated exchange matches against (the same arrays, the
    same rules as a recorded :class:`Tape`: a test holds the two equal). :meth:`tape` gives the
    rows so far as a :class:`Tape` of views (no copy). ``resolution``: µs one exchange stamp
    covers (1 s for KIS's HHMMSS)."""

    def __init__(
        self,
        stock_code: str,
        stock_day,
        clock: FeedClock | None = None,
        resolution: int = 1,
        capacity: int = 4096,
    ) -> None:
        self.code, self.stock_day = stock_code, stock_day
        self.clock, self.resolution = clock or FeedClock(), resolution
        lower, upper = krx.price_limits(stock_day.base_price, stock_day.market, stock_day.day)
        self._meta = (stock_code, stock_day.day, stock_day.market, bool(stock_day.kospi200),
                      int(stock_day.base_price), lower, upper)  # fmt: skip
        self._n, self._nb = 0, 0
        self._a = {f: np.zeros(capacity, ROW_DTYPES[f]) for f in ROW_FIELDS}
        self._books = np.zeros((capacity, 4, LEVELS), np.int32)
        # the running state of derived_columns
        self._last = self._static = self._indicative = 0
        self._shown = self._phase = -1

    def __len__(self) -> int:
        return self._n

    @property
    def day(self) -> dt.date:
        return self.stock_day.day

    @property
    def last_ts(self) -> int:
        """The exchange time of the last row received (-1 before any)."""
        return int(self._a["ts"][self._n - 1]) if self._n else -1

    def append(self, row: dict) -> None:
        """One tick row (the tick schema's fields, ``recv_ts`` where known; times as datetimes
        or µs)."""
        n, a = self._n, self._a
        if n == len(a["ts"]):
            self._a = a = {f: np.concatenate([v, np.zeros_like(v)]) for f, v in a.items()}
        stamp, recv = _us(row["timestamp"]), row.get(RECV_COLUMN)
        exch, local = one_row(stamp, None if recv is None else _us(recv), self.clock, self.resolution)
        if n:
            exch, local = max(exch, int(a["ts"][n - 1])), max(local, int(a["local_ts"][n - 1]))
        kind, side, price = KIND[row["event_type"]], int(row["side"]), int(row["price"])
        phase = _phase_of(kind, side, int(row["vi_status"]), row["session"])
        book = self._book(row)
        if phase != self._phase:
            self._shown, self._indicative, self._phase = -1, 0, phase
        if kind == TRADE:
            self._last = price
            if side == 0:
                self._static = price
        if book >= 0:
            self._shown = book
        if kind == INDICATIVE and price > 0:
            self._indicative = price
        bid = int(self._books[self._shown, BID_PX, 0]) if self._shown >= 0 else 0
        mark = bid if phase == PHASE_CONTINUOUS and bid > 0 else self._last
        if phase == PHASE_AUCTION and self._indicative > 0:
            mark = self._indicative
        values = (
            exch, local, kind, price, row["volume"], side, phase, self._last,
            self._static or self.stock_day.base_price, mark, row["cum_volume"], row["program_net_buy"],
            book, self._shown,
        )  # fmt: skip
        for f, v in zip(ROW_FIELDS, values, strict=True):
            a[f][n] = v
        self._n = n + 1

    def _book(self, row: dict) -> int:
        if not (row["bid_price_1"] > 0 or row["ask_price_1"] > 0):
            return -1
        planes = np.array([[row[f"{p}_{i}"] for i in range(1, LEVELS + 1)] for p in _PLANES], dtype=np.int32)
        nb = self._nb
        if nb and np.array_equal(self._books[nb - 1], planes):
            return nb - 1
        if nb == len(self._books):
            self._books = np.concatenate([self._books, np.zeros_like(self._books)])
        self._books[nb] = planes
        self._nb = nb + 1
        return nb

    def tape(self) -> Tape:
        return Tape(
            *self._meta, **{f: v[: self._n] for f, v in self._a.items()}, books=self._books[: self._nb]
        )


def _us(t) -> int:
    return t if isinstance(t, int | np.integer) else krx.epoch_us(t)
