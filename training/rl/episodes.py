"""Episodes for the environment: a data root's VI events split by time like the models' (train,
validation, test), each with a reference to its stretch of tape in the tape cache
(``backtest.tapestore``: memory-mapped, shared by every env runner, never copied into the episode
file) and its decisions' features normalised on the training days; and a planted set whose right
answer is known, for tests and benchmarks."""

from __future__ import annotations

import datetime as dt
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backtest.clock import FeedClock
from backtest.data import load_events
from backtest.tape import LEVELS, PHASE_CONTINUOUS, Tape, make_tape
from backtest.tapestore import TapeStore
from market import krx
from market.krx.clock import US_PER_SECOND, series_us
from training.dataset import Normalizer, VIDataset
from training.rl.interpreters import observed_outputs
from training.rl.simulator import CLOSE_GRACE_S, Episode

SPLITS = ("train", "validation", "test")
_STORES: dict[tuple, TapeStore] = {}  # per process: the stores episodes refer into


@dataclass(frozen=True)
class TapeRef:
    """A stretch of a stock-day in a dataset's tape cache (exchange times ``start_us..end_us``)."""

    root: str
    cache: str
    feed_latency_us: int
    stamp_us: int
    stock_code: str
    day: dt.date
    start_us: int
    end_us: int

    def store(self) -> TapeStore:
        key = (self.root, self.cache, self.feed_latency_us, self.stamp_us)
        if key not in _STORES:
            clock = FeedClock(self.feed_latency_us, self.stamp_us)
            _STORES[key] = TapeStore(Path(self.root), clock=clock, cache_dir=Path(self.cache))
        return _STORES[key]

    def open(self) -> Tape:
        return self.store().window(self.stock_code, self.day, self.start_us, self.end_us)


def build(
    ds: VIDataset,
    days: dict[str, tuple[dt.date, ...]],
    events_path: Path,
    raw: Path,
    horizon_s: int,
    outputs: dict[str, np.ndarray] | None = None,
    clock: FeedClock | None = None,
) -> tuple[dict[str, list[Episode]], Normalizer]:
    """Episodes per split (``days``: split name -> trading days). ``outputs``: per split, a model's
    outputs (``MODEL_OUTPUTS`` order) aligned with that split's decision rows, for a policy that
    observes them."""
    normalizer = Normalizer.fit(ds.on_days(days["train"]))
    infos, _ = load_events(events_path, raw / "instruments.parquet")
    by_id = {e.event_id: e for e in infos}
    store = TapeStore(raw, clock=clock)
    out: dict[str, list[Episode]] = {}
    for split, split_days in days.items():
        part = ds.on_days(split_days)
        x = normalizer.tabular(part)
        f = part.frame
        ts = series_us(f["event_timestamp"]).to_numpy()
        episodes = []
        for eid, rows in f.groupby("event_id", sort=False).indices.items():
            if eid not in by_id:
                continue
            rows = rows[np.argsort(f["decision_offset_s"].to_numpy()[rows])]
            ev = by_id[eid]
            start = int(ts[rows[0]])
            store(ev.stock_code, ev.day)  # built into the cache once, here
            longest = len(rows) + horizon_s + CLOSE_GRACE_S + 1
            ref = TapeRef(
                str(Path(raw).resolve()), str(store.cache), store.clock.feed_latency_us, store.clock.stamp_us,
                ev.stock_code, ev.day, ev.release_ts, start + longest * US_PER_SECOND,
            )  # fmt: skip
            extra = observed_outputs(outputs[split][rows]).astype(np.float32) if outputs else None
            episodes.append(Episode(ev, ref, x[rows], ts[rows], extra))
        out[split] = sorted(episodes, key=lambda e: e.event.release_ts)
    return out, normalizer


def save(path: Path, episodes: dict[str, list[Episode]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(episodes, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load(path: str | Path) -> dict[str, list[Episode]]:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def flat_tape(
    day: dt.date, start_us: int, prices: np.ndarray, step_us: int = 100_000, stock_code: str = "005930"
) -> Tape:
    """A continuous-session tape with a trade and then a deep one-tick book every ``step_us`` at
    ``prices`` (KRW, on the grid), seen the instant they happen: for planted episodes and tests."""
    from backtest.execution import BUY
    from backtest.tape import BOOK, TRADE, derived_columns, stack_books
    from market.events.detector import StockDay

    n = len(prices)
    ts = np.repeat(start_us + np.arange(n, dtype=np.int64) * step_us, 2)
    tick = np.array([krx.tick_size(int(p), "KOSPI", day) for p in prices], dtype=np.int64)
    levels = np.arange(LEVELS, dtype=np.int64)
    ask_px = prices[:, None] + levels[None, :] * tick[:, None]
    bid_px = prices[:, None] - (levels[None, :] + 1) * tick[:, None]
    depth = np.full((n, LEVELS), 10_000, dtype=np.int64)
    empty = np.zeros((n, LEVELS), np.int64)
    planes = [
        np.stack([e, b], 1).reshape(2 * n, LEVELS)
        for e, b in ((empty, bid_px), (empty, depth), (empty, ask_px), (empty, depth))
    ]
    book, books = stack_books(planes)
    kind = np.tile(np.array([TRADE, BOOK], np.int8), n)
    price = np.repeat(prices, 2) * (kind == TRADE)
    side = np.where(kind == TRADE, BUY, 0).astype(np.int8)
    phase = np.full(2 * n, PHASE_CONTINUOUS, np.int8)
    volume = np.where(kind == TRADE, 10, 0)
    sd = StockDay(day, "KOSPI", False, int(prices[0]))
    arrays = {
        "ts": ts, "local_ts": ts, "kind": kind, "price": price, "volume": volume, "side": side,
        "phase": phase, "cum_volume": np.cumsum(volume), "program_net_buy": np.zeros(2 * n, np.int64),
        "book": book, **derived_columns(kind, price, side, phase, book, books, sd.base_price),
    }  # fmt: skip
    return make_tape(stock_code, sd, arrays, books)


def planted(
    n: int = 200, seed: int = 0, horizon_s: int = 20, move: float = 0.03, noise: int = 3
) -> list[Episode]:
    """Episodes whose first feature says where the price goes: +1, it climbs ``move`` over the
    horizon; -1, it falls as much. The other features are noise. The best policy buys at the first
    second when the sign is +1 and holds; it stays out otherwise."""
    from backtest.strategy import EventInfo

    rng = np.random.default_rng(seed)
    day = dt.date(2024, 6, 3)
    out = []
    for i in range(n):
        sign = 1 if rng.random() < 0.5 else -1
        release = krx.at_seoul(day, dt.time(10, 0)) + i * 10 * US_PER_SECOND
        start = (release // US_PER_SECOND + 1) * US_PER_SECOND
        steps = (horizon_s + CLOSE_GRACE_S + 2) * 10
        path = 10_000 * (1 + sign * move * np.clip(np.arange(steps) / (horizon_s * 10), 0, 1))
        prices = (np.round(path / 10) * 10).astype(np.int64)
        code = f"9{i:05d}"  # a stock of its own: planted tapes overlap in time
        tape = flat_tape(day, release, prices, stock_code=code)
        features = np.concatenate(
            [np.full((10, 1), sign, np.float32), rng.standard_normal((10, noise)).astype(np.float32)], axis=1
        )
        event = EventInfo(
            f"planted-{i}",
            code,
            "KOSPI",
            day,
            release - 130 * US_PER_SECOND,
            release,
            sign,
            "dynamic",
            10_000,
        )
        out.append(Episode(event, tape, features, start + np.arange(10, dtype=np.int64) * US_PER_SECOND))
    return out
