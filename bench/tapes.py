"""Reading tapes: rows per second of every stock-day of a small synthetic market through main's
reader before issue 29 (the baseline, measured in the same run), the new Parquet reader
(``backtest.tape.load_tape``), and the memory-mapped cache (``backtest.tapestore.TapeStore``):
building it, then opening it afresh and touching every row; random 10-minute windows with and
without the cache; and what a row costs in memory and on disk."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from backtest.tape import load_tape
from backtest.tapestore import TapeStore
from bench.common import publish
from market import krx
from market.events.table import load_stock_days
from market.krx.dataset import read_accepted, tick_file
from market.synthetic.generator import generate

WINDOWS = 200
WINDOW_S = 600
TARGET_ROWS_PER_S = 5_000_000

# --- the baseline: main's reader before issue 29 (backtest/tape.py at 68f9d67), arrays only ---
_LEVELS = 10
_KIND = {"trade": 0, "book": 1, "indicative": 2, "status": 3}
_TRADE = _KIND["trade"]
_CLOSED, _CONTINUOUS, _AUCTION = 0, 1, 2
_AUCTIONS = ("opening_auction", "closing_auction")
_BOOK_COLUMNS = [
    f"{s}_{k}_{i}" for s in ("bid", "ask") for k in ("price", "volume") for i in range(1, _LEVELS + 1)
]
_COLUMNS = [
    "timestamp", "event_type", "price", "volume", "cum_volume", "side", *_BOOK_COLUMNS,
    "program_net_buy", "vi_status", "session",
]  # fmt: skip


def _old_phases(kind, side, vi_status, session) -> np.ndarray:
    out = np.full(len(kind), _CONTINUOUS, dtype=np.int8)
    out[np.isin(session, _AUCTIONS) | (vi_status == 1)] = _AUCTION
    out[~np.isin(session, (*_AUCTIONS, "continuous"))] = _CLOSED
    uncross = (kind == _TRADE) & (side == 0)
    out[uncross] = np.where(session[uncross] == "closing_auction", _CLOSED, _CONTINUOUS)
    return out


def _old_carry_books(*books: np.ndarray) -> tuple[np.ndarray, ...]:
    has = (books[0][:, 0] > 0) | (books[2][:, 0] > 0)
    src = np.maximum.accumulate(np.where(has, np.arange(len(has)), 0))
    return tuple(b[src] for b in books)


def _old_tape_from_table(table: pa.Table) -> dict[str, np.ndarray]:
    col = {c: table[c].to_numpy(zero_copy_only=False) for c in _COLUMNS if c != "timestamp"}
    ts = krx.series_us(table["timestamp"].to_pandas()).to_numpy(dtype=np.int64)
    kind = np.full(len(ts), -1, dtype=np.int8)
    for name, code in _KIND.items():
        kind[col["event_type"] == name] = code

    def book(s: str, k: str) -> np.ndarray:
        return np.stack([col[f"{s}_{k}_{i}"] for i in range(1, _LEVELS + 1)], axis=1).astype(np.int64)

    bid_px, bid_qty, ask_px, ask_qty = _old_carry_books(
        book("bid", "price"), book("bid", "volume"), book("ask", "price"), book("ask", "volume")
    )
    price = col["price"].astype(np.int64)
    traded = np.where(kind == _TRADE, np.arange(len(ts)), -1)
    last = np.maximum.accumulate(traded) if len(ts) else traded
    return {
        "ts": ts,
        "kind": kind,
        "price": price,
        "volume": col["volume"].astype(np.int64),
        "side": col["side"].astype(np.int8),
        "bid_px": bid_px,
        "bid_qty": bid_qty,
        "ask_px": ask_px,
        "ask_qty": ask_qty,
        "phase": _old_phases(kind, col["side"], col["vi_status"], col["session"].astype(str)),
        "last_price": np.where(last >= 0, price[np.maximum(last, 0)], 0),
        "cum_volume": col["cum_volume"].astype(np.int64),
        "program_net_buy": col["program_net_buy"].astype(np.int64),
    }


def reference_reader(root: Path, code: str, stock_day) -> dict[str, np.ndarray]:
    """main's tape reader before issue 29 (``tape_from_table``, ``_carry_books``, ``phases`` and
    ``load_tape`` of backtest/tape.py at commit 68f9d67), kept only as this bench's baseline: the
    accepted rows of a stock-day as arrays, every row's book a full (rows, 10) int64 copy (a row
    that brought none carries the last one). The price limits it also computed are left out (two
    integers a stock-day)."""
    path = tick_file(root, stock_day.day, code)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ticks for {code} on {stock_day.day}")
    return _old_tape_from_table(read_accepted(root, path, _COLUMNS))


# --- the measurements ---


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _touch(tape) -> int:
    """Read every row of a tape (and its books once): what a replay pays at least."""
    return int(tape.ts.sum()) + int(tape.price.sum()) + int(tape.book.sum()) + int(tape.books.sum())


def _touch_window(tape) -> int:
    """Read every row of a window and the books its rows brought (a window shares the day's books)."""
    own = tape.book[tape.book >= 0]
    return int(tape.ts.sum()) + int(tape.price.sum()) + int(own.sum()) + int(tape.books[own].sum())


def _open_and_read(root: Path, cache: Path, keys: list) -> int:
    store = TapeStore(root, cache_dir=cache)  # fresh: nothing opened yet, only the files
    total = sum(_touch(store(code, day)) for code, day in keys)
    assert store.built == 0, "the cache was rebuilt"
    return total


def _windows(tapes: TapeStore, keys: list, seed: int) -> list[tuple[str, dt.date, int, int]]:
    """Random 10-minute windows of random stock-days, inside each day's trading."""
    rng = random.Random(seed)
    spans = {}
    for code, day in keys:
        ts = tapes(code, day).ts
        spans[(code, day)] = (int(ts[0]), int(ts[-1]))
    out = []
    for _ in range(WINDOWS):
        code, day = keys[rng.randrange(len(keys))]
        first, last = spans[(code, day)]
        start = rng.randrange(first, max(first + 1, last - WINDOW_S * krx.US_PER_SECOND))
        out.append((code, day, start, start + WINDOW_S * krx.US_PER_SECOND))
    return out


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def episode_store_bytes(root: Path, cache: Path, stock_days: dict, features: int = 134) -> dict:
    """The RL episode file for every detected VI of the bench market, both ways: today's (main's
    before issue 29: each episode a pickled copy of its stretch of tape, main's layout, from the
    release to the longest episode's end plus the close grace) and the new one (each episode a
    reference into the tape cache); the features (10 decisions x ``features`` float32) alike."""
    import pickle

    from market.events.table import detect, events_table
    from training.rl.episodes import TapeRef

    table = events_table(detect(root)).to_pandas()
    table = table[table["release_ts"].notna()]
    grace_s = 10 + 60 + 300 + 1  # decisions, the default horizon, the close grace (episodes.build)
    old_tapes: dict = {}
    old, new = [], []
    for r in table.itertuples():
        code, day = r.stock_code, r.trigger_ts.date()
        start = int(r.release_ts.value // 1000)
        x = np.zeros((10, features), np.float32)
        if (code, day) not in old_tapes:
            old_tapes[(code, day)] = reference_reader(root, code, stock_days[(code, day)])
        arrays = old_tapes[(code, day)]
        lo, hi = np.searchsorted(arrays["ts"], [start, start + grace_s * 1_000_000], side="right")
        old.append((r.event_id, {k: v[max(lo - 1, 0) : hi].copy() for k, v in arrays.items()}, x))
        ref = TapeRef(str(root), str(cache), 20_000, 0, code, day, start, start + grace_s * 1_000_000)
        new.append((r.event_id, ref, x))
    old_bytes = len(pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL))
    new_bytes = len(pickle.dumps(new, protocol=pickle.HIGHEST_PROTOCOL))
    return {
        "episodes": len(new),
        "episode_store_bytes_baseline": old_bytes,
        "episode_store_bytes_refs": new_bytes,
        "episode_store_ratio": round(new_bytes / old_bytes, 4),
        "episode_store_target": "at most a fifth of the baseline's bytes",
    }


def main(stocks: int = 8, days: int = 2) -> dict:
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-tapes-"))
    try:
        root = work / "raw"
        generate(root, stocks, days, 29, dt.date(2024, 3, 4), "hot", 2)
        stock_days = load_stock_days(root / "instruments.parquet")
        keys = sorted(k for k in stock_days if tick_file(root, k[1], k[0]).exists())

        base_s, old = _timed(lambda: [reference_reader(root, c, stock_days[(c, d)]) for c, d in keys])
        rows = sum(len(a["ts"]) for a in old)
        old_bytes = sum(v.nbytes for a in old for v in a.values())
        del old
        parquet_s, new = _timed(lambda: [load_tape(root, c, stock_days[(c, d)]) for c, d in keys])
        assert sum(len(t) for t in new) == rows
        new_bytes = sum(t.nbytes for t in new)
        bookless = sum(int((t.book < 0).sum()) for t in new)
        del new

        cache = work / "cache"
        build_store = TapeStore(root, cache_dir=cache)
        build_s, _ = _timed(lambda: [build_store(c, d) for c, d in keys])
        assert build_store.built == len(keys)
        file_bytes = sum(p.stat().st_size for p in cache.glob("*/*.tape"))
        open_times = [_timed(lambda: _open_and_read(root, cache, keys))[0] for _ in range(3)]
        open_s = float(np.median(open_times))

        windows = _windows(build_store, keys, 7)
        store = TapeStore(root, cache_dir=cache)
        win_cache_s, cached = _timed(
            lambda: [_touch_window(store.window(c, d, a, b)) for c, d, a, b in windows]
        )
        win_parquet_s, direct = _timed(
            lambda: [
                _touch_window(load_tape(root, c, stock_days[(c, d)]).window(a, b)) for c, d, a, b in windows
            ]
        )
        assert cached == direct, "a cached window differs from the Parquet tape's"

        base_rate = _rate(rows, base_s)
        table = [
            {"reader": "baseline: main's reader before issue 29 (Parquet)", "rows": rows,
             "seconds": base_s, "rows_per_s": base_rate, "vs_baseline": 1.0},
            {"reader": "backtest.tape.load_tape (Parquet)", "rows": rows,
             "seconds": parquet_s, "rows_per_s": _rate(rows, parquet_s),
             "vs_baseline": _rate(rows, parquet_s) / base_rate},
            {"reader": "TapeStore: first build (Parquet -> cache)", "rows": rows,
             "seconds": build_s, "rows_per_s": _rate(rows, build_s),
             "vs_baseline": _rate(rows, build_s) / base_rate},
            {"reader": "TapeStore: open + read every row (fresh store; median of 3)", "rows": rows,
             "seconds": open_s, "rows_per_s": _rate(rows, open_s),
             "vs_baseline": _rate(rows, open_s) / base_rate},
        ]  # fmt: skip
        notes = {
            "stock_days": len(keys),
            "target": f"opening and reading the cache at least {TARGET_ROWS_PER_S:,} rows/s",
            "cache_open_read_rows_per_s": round(_rate(rows, open_s)),
            "cache_vs_baseline": round(_rate(rows, open_s) / base_rate, 1),
            "page_cache": "warm (the cache files were just written)",
            f"windows_{WINDOW_S // 60}min_per_s_cache": round(_rate(WINDOWS, win_cache_s), 1),
            f"windows_{WINDOW_S // 60}min_per_s_parquet_each": round(_rate(WINDOWS, win_parquet_s), 1),
            "windows_speedup": round(win_parquet_s / win_cache_s, 1),
            "bytes_per_row_baseline_in_memory": round(old_bytes / rows, 1),
            "bytes_per_row_tape_in_memory": round(new_bytes / rows, 1),
            "bytes_per_row_cache_file": round(file_bytes / rows, 1),
            "share_of_rows_without_a_book": round(bookless / rows, 3),
            **episode_store_bytes(root, cache, stock_days),
            "tape_cache_bytes_the_refs_share": file_bytes,
        }
        publish("tapes", "Reading tapes: Parquet readers and the memory-mapped cache", table, notes)
        return {"rows": table, "notes": notes}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
