"""Where the live executor's tick rows come from (serving/executor.py ``Source``):

- :class:`ReplaySource`: a dataset's stock-days (``data/raw``: vendor files, KIS recordings or the
  synthetic market) played in the order they were received (``backtest.clock``: the recorded
  receive time, or the end of the stamp plus the feed latency where the data has none), at the
  real pace times ``speed`` (0: as fast as the executor takes them). Every row carries its receive
  time (``recv_ts``); its clock is the replayed receive time.
- :class:`KisSource`: the KIS real-time feed (or the loopback fake KIS) through
  :class:`~market.kis.stream.KisStream`, its frames turned into tick rows by
  :class:`~market.kis.live.LiveTicks` (the recording ingest's own steps; ``recv_ts`` their frame's
  receive time), the stock-days' base prices read off the feed. Its clock is the local one
  (``KisRest.market_now_us``); KIS stamps whole seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backtest.clock import FeedClock, two_clocks
from backtest.tape import RECV_COLUMN, has_receive_times, us_column
from market import krx
from market.events.detector import StockDay
from market.events.table import load_stock_days
from market.kis.client import KisRest
from market.kis.live import LiveTicks
from market.kis.stream import Gap, KisStream, watchlist
from market.krx.dataset import read_accepted, tick_file
from market.krx.schema import TICK_SCHEMA
from serving.executor import Batch

BATCH_ROWS = 256  # rows handed over at once when the replay runs behind (or as fast as it can)
MAX_FRAMES = 500  # KIS frames turned into rows at once


class ReplaySource:
    name = "replay"

    def __init__(
        self,
        root: Path,
        day: dt.date,
        codes: list[str],
        speed: float = 1.0,
        start: dt.time | None = None,
        end: dt.time | None = None,
        feed_clock: FeedClock | None = None,
    ) -> None:
        self.root, self.day, self.codes, self.speed = Path(root), day, codes, speed
        self.feed_clock = feed_clock or FeedClock()
        self._stamp_us: dict[str, int] = {}
        self.stock_days = {
            k: v for k, v in load_stock_days(root / "instruments.parquet").items() if k[1] == day
        }
        missing = [c for c in codes if (c, day) not in self.stock_days]
        if missing:
            raise ValueError(f"{root}: no instrument record for {', '.join(missing)} on {day}")
        self.start_us = krx.at_seoul(day, start) if start else None
        self.end_us = krx.at_seoul(day, end) if end else None
        self.rows = 0
        self.lag_ms: float | None = None
        self._done = False

    def stamp_us(self, stock_code: str) -> int:
        return self._stamp_us.get(stock_code, 1)

    def _table(self) -> pa.Table:
        """The stock-days' rows between ``start`` and ``end`` (exchange stamps), each with its receive
        time, in the order they were received."""
        parts = []
        for code in self.codes:
            path = tick_file(self.root, self.day, code)
            recorded = has_receive_times(path)
            t = read_accepted(self.root, path, [*TICK_SCHEMA.names, *([RECV_COLUMN] if recorded else [])])
            stamps = us_column(t["timestamp"])
            received = us_column(t[RECV_COLUMN]) if recorded else None
            self._stamp_us[code] = self.feed_clock.resolution(stamps)
            _, local = two_clocks(stamps, received, self.feed_clock, self._stamp_us[code])
            recv = pa.array(local, pa.int64()).cast(pa.timestamp("us", tz="Asia/Seoul"))
            t = t.drop_columns([RECV_COLUMN] if recorded else []).append_column(RECV_COLUMN, recv)
            keep = pc.and_(
                pc.greater_equal(stamps, self.start_us or 0), pc.less_equal(stamps, self.end_us or 2**62)
            )
            parts.append(t.filter(keep))
        table = pa.concat_tables(parts)
        order = np.argsort(table[RECV_COLUMN].cast(pa.int64()).to_numpy(), kind="stable")
        return table.take(pa.array(order))

    async def batches(self) -> AsyncIterator[Batch]:
        table = self._table()
        stamps = table[RECV_COLUMN].cast(pa.int64()).to_numpy()  # the replay's clock: receive times
        if not len(stamps):
            return
        t0_wall, t0 = time.monotonic(), int(stamps[0])
        i = 0
        while i < len(stamps):
            if self.speed > 0:
                due = (stamps[i] - t0) / 1e6 / self.speed - (time.monotonic() - t0_wall)
                if due > 0:
                    await asyncio.sleep(min(due, 0.5))
                    clock = t0 + int((time.monotonic() - t0_wall) * self.speed * 1e6)
                    if clock < stamps[i]:  # quiet: the clock moves on without rows
                        yield Batch([], clock, time.perf_counter_ns())
                        continue
                now_us = t0 + int((time.monotonic() - t0_wall) * self.speed * 1e6)
                j = min(int(stamps.searchsorted(now_us, "right")), i + BATCH_ROWS)
                self.lag_ms = max(0.0, (now_us - stamps[i]) / 1e3 / self.speed)
            else:
                j = min(i + BATCH_ROWS, len(stamps))
            j = max(j, i + 1)
            rows = table.slice(i, j - i).to_pylist()
            arrived = time.perf_counter_ns()
            self.rows += len(rows)
            yield Batch(rows, int(stamps[j - 1]), arrived)
            await asyncio.sleep(0)  # let the status page and the broker's tasks run
            i = j
        self._done = True

    def health(self) -> dict:
        return {
            "lag_ms": self.lag_ms, "frames": self.rows, "drift": 0, "reconnects": 0, "gaps": 0,
            "last_frame_age_s": None, "state": "done" if self._done else "live",
        }  # fmt: skip


class KisSource:
    """``rest`` is shared with the KIS broker (one token, one rate limiter); ``clock_us`` stamps
    receive times and is the market clock (the wall's, live; a fake's replay clock in tests)."""

    name = "kis"

    def __init__(
        self,
        rest: KisRest,
        stocks: dict[str, dict],
        codes: list[str],
        *,
        clock_us: Callable[[], int],
        stop_us: int | None = None,
        backoff_s: float = 0.5,
    ) -> None:
        self.rest, self.codes, self.stop_us, self.clock = rest, codes, stop_us, clock_us
        self.feed_clock = FeedClock()
        self.ticks = LiveTicks({c: stocks[c] for c in codes}, stock_day=StockDay.from_instrument)
        self.stock_days = self.ticks.stock_days
        self.stream = KisStream(
            rest.config.ws, rest.approval_key, watchlist(codes), clock_us=clock_us, backoff_s=backoff_s
        )
        self._last_recv: float | None = None
        self._lag_ms: float | None = None
        self._done = False

    def stamp_us(self, stock_code: str) -> int:
        return krx.US_PER_SECOND  # HHMMSS

    async def batches(self) -> AsyncIterator[Batch]:
        async for items in self._until_stop():
            frames: list[tuple[int, str]] = []
            for item in [*items, None]:
                if isinstance(item, Gap) or (item is None and (frames or not items)):
                    yield self._batch(frames)
                    frames = []
                if isinstance(item, Gap):
                    yield Batch([], self.clock(), time.perf_counter_ns(), gap=f"KIS feed down: {item.reason}")
                elif item is not None:
                    frames.append((item.recv_us, item.text))
        self._done = True

    def _batch(self, frames: list[tuple[int, str]]) -> Batch:
        """The frames that arrived together, as one batch of rows (the ingest's steps cost a few
        milliseconds a call, whatever its size: a busy feed is taken in batches, not frame by frame)."""
        arrived = time.perf_counter_ns()
        rows = self.ticks.on_frames(frames) if frames else []
        if frames:
            self._last_recv = time.monotonic()
        if rows:
            self._lag_ms = max(0.0, (frames[-1][0] - krx.epoch_us(rows[-1]["timestamp"])) / 1e3)
        return Batch(rows, self.clock(), arrived)

    async def _until_stop(self) -> AsyncIterator[list]:
        """The stream's items as they arrive, as many as are there at once (an empty list every
        half second while it is quiet), until ``stop_us``."""
        events = self.stream.events().__aiter__()
        pending = asyncio.ensure_future(events.__anext__())
        try:
            while self.stop_us is None or self.clock() < self.stop_us:
                done, _ = await asyncio.wait({pending}, timeout=0.5)
                if not done:
                    yield []
                    continue
                items = []
                while pending.done() and len(items) < MAX_FRAMES:
                    try:
                        items.append(pending.result())
                    except StopAsyncIteration:
                        yield items
                        return
                    pending = asyncio.ensure_future(events.__anext__())
                    for _ in range(3):  # a frame already received is handed over within a few turns
                        await asyncio.sleep(0)
                yield items
        finally:
            pending.cancel()
            await self.stream.close()

    def health(self) -> dict:
        s = self.stream.stats
        age = None if self._last_recv is None else round(time.monotonic() - self._last_recv, 1)
        return {
            "lag_ms": self._lag_ms,
            "frames": s.frames,
            "drift": s.drifted,
            "reconnects": s.reconnects,
            "gaps": s.gaps,
            "last_frame_age_s": age,
            "state": "done" if self._done else ("stale" if age is not None and age > 5 else "live"),
        }
