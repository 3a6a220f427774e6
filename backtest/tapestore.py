"""Tapes kept on disk in the tape's own layout, memory-mapped: a stock-day is built from Parquet
once (``backtest.tape``), then opened in microseconds and read at memory speed, and a window
touches only its own rows.

One file per stock-day (``<cache>/<date>/<code>.tape``): the row arrays back to back in their
tape types (int32 prices and sizes, int8 codes), the distinct books once each (rows point at them),
and a second-to-row index (the first row at or after each second of the day, exchange time), so a
window is two index reads and a slice. Beside it ``<code>.json``: the offsets, and the key the file
was built for (the tick file, validation's quarantine of it, the feed clock, the base price, the
layout version); a changed key rebuilds it. Nothing in the dataset root is written.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from backtest.clock import FeedClock
from backtest.tape import LEVELS, ROW_DTYPES, ROW_FIELDS, Tape, load_tape
from market import krx
from market.events.table import load_stock_days
from market.krx.dataset import VERDICT_FILE, partition_name, quarantine_file, tick_file

LAYOUT = 1
_ALIGN = 8


def default_cache(root: Path) -> Path:
    """``<data root>/cache/tapes/<dataset name>`` beside the dataset (never inside it)."""
    root = Path(root).absolute()  # not resolved: a linked dataset's cache stays in this data root
    return root.parent / "cache" / "tapes" / root.name


def _stat(path: Path) -> list[int] | None:
    if not path.exists():
        return None
    s = path.stat()
    return [s.st_size, s.st_mtime_ns]


class TapeStore:
    """The tapes of a dataset root: ``store(code, day)`` (a :data:`backtest.engine.TapeSource`)
    opens a stock-day, building its file first if it is missing or stale. ``keep``: opened tapes
    held (they are mappings, not copies)."""

    def __init__(
        self,
        root: Path,
        instruments_path: Path | None = None,
        clock: FeedClock | None = None,
        cache_dir: Path | None = None,
        keep: int = 256,
    ) -> None:
        self.root = Path(root)
        self.days = load_stock_days(instruments_path or self.root / "instruments.parquet")
        self.clock = clock or FeedClock()
        self.cache = Path(cache_dir) if cache_dir else default_cache(self.root)
        self.keep = keep
        self.built = 0  # stock-days built from Parquet by this store
        # per stock-day: its tape and second_index, both views of one mapping (a file descriptor
        # each): dropped together, so no more than ``keep`` stay mapped
        self._open: OrderedDict[tuple[str, object], tuple[Tape, np.ndarray]] = OrderedDict()

    def __call__(self, stock_code: str, day) -> Tape:
        return self._opened(stock_code, day)[0]

    def _opened(self, stock_code: str, day) -> tuple[Tape, np.ndarray]:
        key = (stock_code, day)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        opened = self._load(stock_code, day)
        self._open[key] = opened
        if len(self._open) > self.keep:
            self._open.popitem(last=False)
        return opened

    def stock_day(self, stock_code: str, day):
        try:
            return self.days[(stock_code, day)]
        except KeyError:
            raise KeyError(f"{self.root}: no instrument record for {stock_code} on {day}") from None

    def _key(self, stock_code: str, day) -> dict:
        sd = self.stock_day(stock_code, day)
        ticks = tick_file(self.root, day, stock_code)
        return {
            "layout": LAYOUT,
            "ticks": _stat(ticks),
            "quarantine": _stat(quarantine_file(self.root, partition_name(ticks))),
            "verdict": _stat(self.root / VERDICT_FILE),
            "clock": asdict(self.clock),
            "stock_day": [str(sd.day), sd.market, bool(sd.kospi200), int(sd.base_price)],
        }

    def paths(self, stock_code: str, day) -> tuple[Path, Path]:
        folder = self.cache / str(day)
        return folder / f"{stock_code}.tape", folder / f"{stock_code}.json"

    def open(self, stock_code: str, day) -> Tape:
        return self._load(stock_code, day)[0]

    def _load(self, stock_code: str, day) -> tuple[Tape, np.ndarray]:
        data, meta_path = self.paths(stock_code, day)
        key = self._key(stock_code, day)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() and data.exists() else None
        if meta is None or meta["key"] != key:
            meta = self._build(stock_code, day, key)
        return _map(data, meta, self.stock_day(stock_code, day), stock_code)

    def window(self, stock_code: str, day, start_us: int, end_us: int) -> Tape:
        """The rows from the last one at or before ``start_us`` to ``end_us`` (exchange times),
        found by the second-to-row index: only those rows are read."""
        tape, index = self._opened(stock_code, day)
        first, seconds = int(index[0]), len(index) - 1
        a = min(max(start_us // krx.US_PER_SECOND - first, 0), seconds - 1)
        b = min(max(end_us // krx.US_PER_SECOND - first + 1, 0), seconds - 1)
        lo, hi = int(index[1 + a]), int(index[1 + b])  # the rows of seconds [a, b)
        return tape.rows(max(lo - 1, 0), hi).window(start_us, end_us)

    def _build(self, stock_code: str, day, key: dict) -> dict:
        tape = load_tape(self.root, stock_code, self.stock_day(stock_code, day), self.clock)
        data, meta_path = self.paths(stock_code, day)
        data.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f: np.ascontiguousarray(getattr(tape, f)) for f in ROW_FIELDS}
        arrays["books"] = np.ascontiguousarray(tape.books)
        arrays["seconds"] = second_index(tape.ts)
        layout, offset = {}, 0
        tmp = data.with_suffix(f".tape.{os.getpid()}.tmp")  # two builders never share one
        with open(tmp, "wb") as fh:
            for name, a in arrays.items():
                pad = -offset % _ALIGN
                fh.write(b"\0" * pad)
                offset += pad
                layout[name] = [offset, str(a.dtype), list(a.shape)]
                fh.write(a.tobytes())
                offset += a.nbytes
        # the old meta goes first: a build cut short from here on leaves no meta to vouch for
        # the new data under the old key, so the next open rebuilds
        meta_path.unlink(missing_ok=True)
        os.replace(tmp, data)
        meta = {"key": key, "rows": len(tape), "layout": layout}
        tmp_meta = meta_path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_meta, meta_path)
        self.built += 1
        return meta


def second_index(ts: np.ndarray) -> np.ndarray:
    """[first second, then for each second from it to one past the last: the first row at or after
    it] (int64): the rows of seconds [a, b) are ``index[1 + a - first] .. index[1 + b - first]``."""
    if not len(ts):
        return np.zeros(1, np.int64)
    first, last = int(ts[0]) // krx.US_PER_SECOND, int(ts[-1]) // krx.US_PER_SECOND
    starts = (np.arange(first, last + 2, dtype=np.int64)) * krx.US_PER_SECOND
    return np.concatenate([[first], np.searchsorted(ts, starts, side="left")]).astype(np.int64)


def _map(data: Path, meta: dict, stock_day, stock_code: str) -> tuple[Tape, np.ndarray]:
    """The tape whose arrays are views of the mapped file (nothing read until touched), and its
    second-to-row index."""
    mm = np.memmap(data, dtype=np.uint8, mode="r")
    arrays = {}
    for name, (offset, dtype, shape) in meta["layout"].items():
        count = int(np.prod(shape)) if shape else 1
        arrays[name] = np.frombuffer(mm, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
    lower, upper = krx.price_limits(stock_day.base_price, stock_day.market, stock_day.day)
    rows = {f: arrays[f] for f in ROW_FIELDS}
    assert all(a.dtype == ROW_DTYPES[f] for f, a in rows.items())
    books = arrays["books"].reshape(-1, 4, LEVELS)
    tape = Tape(
        stock_code, stock_day.day, stock_day.market, bool(stock_day.kospi200), int(stock_day.base_price),
        lower, upper, **rows, books=books,
    )  # fmt: skip
    return tape, arrays["seconds"]
