"""The KIS real-time feed as tick rows, batch by batch as the frames arrive: the live executor's
(``serving/sources.py`` ``KisSource``) way from :class:`~market.kis.stream.KisStream` to the live
VI detector and features (``feature_repo/live.py``).

:class:`LiveTicks` runs the recording ingest's own steps (:mod:`market.kis.ingest`) on each batch
of frames: the frame parser and the record checks (``_read_block``), the arrival order
(``_spine``), each stock's :class:`~market.kis.feed.StockFeed` (``_run_feeds``), the row assembly
(``_rows``) and the base price (``_base_prices``). The KIS field mapping has that one home; what
carries from batch to batch is kept here: the stocks' feeds, each stock-day's latest ACML_VOL and
H0STPGM0 NTBY_CNQN, and the frame counter that numbers the frames as a recording numbers its lines.

What must hold:
- Parity: the frames of a recording fed in arrival order, in batches of any size, give each
  stock-day the rows ``ingest_kis`` writes for it, in the same order, with the same values (a
  test feeds a recording in random batches). Two inputs of the ingest are not live: the VI-status
  REST record (polled after the fact: ``vi_type`` stays ``none`` and the detector settles the
  type, as for a recording without it), and the reordering of frames whose receive times went
  back (the ingest sorts each stock's records by receive time; live, that holds within a batch).
- A stock-day's rows come out only once its 기준가 (base price) is known, by the ingest's rule (the
  first trade's price minus its change, or a book's expected price minus its change), and
  :attr:`LiveTicks.stock_days` has it (``stock_day`` of its instruments.parquet row: a
  ``StockDay`` where the executor asks for one) before the first of them is returned: the VI
  detector refuses a stock-day it has no record of. The dict is filled in place, so the detector
  and the live features can be given the same object. Rows before that (an H0STMKO0 push ahead
  of every trade and book) are held back and come out, in order, with the batch that tells it; a
  feed subscribed before the open has it from its first book.
- Rows of one batch come out in arrival order (receive time, then frame and record), stocks
  interleaved as they came; a stock's rows are in the ingest's order.
- Nothing raises on bad input: every frame is a data frame, a control message or quarantined in
  :attr:`LiveTicks.refused` with its reason (``file`` ``live``, ``line`` the frame's number since
  the start), and every record accepted or quarantined, counted in :attr:`LiveTicks.report` as
  the ingest counts a recording's (``report.balanced``). A :class:`~market.kis.stream.Gap` goes in
  as ``(gap.end_us, gap.frame())``, as the recorder writes it: a control message (VICAP_GAP).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from market import krx
from market.kis.feed import StockFeed
from market.kis.ingest import (
    KisReport,
    _base_prices,
    _instrument,
    _read_block,
    _rows,
    _run_feeds,
    _spine,
)
from market.kis.recording import PROGRAM, TRADE, Lines, Refused
from market.krx.schema import RECV_TS_FIELD, TICK_SCHEMA

LIVE_FILE = "live"  # the quarantine's ``file`` for frames refused live
ROW_NAMES = [*TICK_SCHEMA.names, RECV_TS_FIELD.name]  # a tick file's columns, as the ingest writes them


class LiveTicks:
    """KIS frames in as they arrive, tick rows out: the recording ingest's own steps on each batch."""

    def __init__(self, stocks: dict[str, dict], *, stock_day: Callable[[dict], Any] = dict) -> None:
        """``stocks``: the rows of ``stocks.csv`` by stock code (:func:`market.kis.ingest.load_stocks`).
        ``stock_day`` makes the value of :attr:`stock_days` from a stock-day's instruments.parquet
        row: the live executor passes ``market.events.detector.StockDay.from_instrument`` (market.kis
        may not import market.events); by default the row itself."""
        self.stocks = stocks
        self.stock_days: dict[tuple[str, dt.date], Any] = {}
        self._stock_day = stock_day
        self.report = KisReport()
        self.refused = Refused()
        self._codes = sorted(stocks)
        self._feeds: dict[int, StockFeed] = {}
        self._carry: dict[int, dict[int, tuple[int, int]]] = {TRADE: {}, PROGRAM: {}}
        self._frames = 0  # frames so far: a frame's number is its line
        self._known: set[tuple[int, int]] = set()  # (stock, day number) with a base price
        self._held: dict[tuple[int, int], list[dict]] = {}  # rows waiting for their base price

    @property
    def held(self) -> int:
        """Rows held back until their stock-day's base price is known."""
        return sum(map(len, self._held.values()))

    def on_frames(self, frames: list[tuple[int, str]]) -> list[dict]:
        """``frames``: (receive time in µs, frame text) in arrival order. Returns the tick rows
        they make (the tick schema's fields and ``recv_ts``; timestamps as Seoul datetimes)."""
        if not frames:
            return []
        typed = _read_block(LIVE_FILE, self._lines(frames), 0, self.stocks, self.report, self.refused)
        spine, fields = _spine(typed)
        if not len(spine):
            return []
        feeds, clock_held = _run_feeds(spine, fields, self._codes, [], self._feeds)
        self.report.clock_held += clock_held
        spine = pd.concat([spine, feeds], axis=1)
        out = self._learn_base_prices(spine, fields)
        table = _rows(spine, fields, self.stocks, [], self._carry)
        keep = spine["kind"].to_numpy() != PROGRAM
        stock, day = spine["stock"].to_numpy()[keep], spine["day"].to_numpy()[keep]
        arrival = np.lexsort((spine["order"].to_numpy()[keep], spine["recv_us"].to_numpy()[keep]))
        rows = table.select(ROW_NAMES).take(arrival).to_pylist()
        for row, key in zip(
            rows, zip(stock[arrival].tolist(), day[arrival].tolist(), strict=True), strict=True
        ):
            if key in self._known:
                out.append(row)
            else:
                self._held.setdefault(key, []).append(row)
        self.report.rows_written += len(out)
        return out

    def _lines(self, frames: list[tuple[int, str]]) -> Lines:
        """The frames as a block of recording lines, numbered on from the frames before."""
        n = len(frames)
        recv_us = np.fromiter((f[0] for f in frames), dtype=np.int64, count=n)
        stamps = [krx.from_us(t).isoformat(timespec="microseconds") for t in recv_us.tolist()]
        line = np.arange(self._frames + 1, self._frames + n + 1)
        self._frames += n
        text = pa.array([f[1] for f in frames], pa.string())
        return Lines(line, pa.array(stamps, pa.string()), recv_us, text, [])

    def _learn_base_prices(self, spine: pd.DataFrame, fields: dict) -> list[dict]:
        """Record the base price of each stock-day this batch tells for the first time; returns
        the rows held back for them, in order."""
        pairs = set(zip(spine["stock"].tolist(), spine["day"].tolist(), strict=True))
        if pairs <= self._known:
            return []
        released = []
        for (stock, day), base in _base_prices(spine, fields).items():
            stock, day = int(stock), int(day)
            if (stock, day) in self._known or np.isnan(base):
                continue
            code = self._codes[stock]
            row = _instrument(code, self.stocks[code], day, int(base))
            self.stock_days[(code, row["date"])] = self._stock_day(row)
            self._known.add((stock, day))
            released += self._held.pop((stock, day), [])
        self.report.stock_days = len(self.stock_days)
        return released
