"""The live feature path: tick rows in, as the feed delivers them; feature rows out at each decision.

It runs the batch path's own pieces: the streaming VI detector (``market.events.detector``), the
1-second panel (``market.events.panels``, the same SQL over the buffered rows) and the feature functions
(``feature_repo.features``). A decision ``k`` of a VI is taken as soon as the stock's first row at
or after its decision time arrives (or :meth:`LiveFeaturePath.flush` says the clock passed it), and
before that row is buffered: nothing stamped after the decision time can reach it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from feature_repo.build import FeatureRows, events_as_dicts
from feature_repo.features import (
    MAX_DECISION_OFFSET,
    PANEL_BEFORE_S,
    US,
    EventInfo,
    VIHistory,
    decision_row,
    decision_time_us,
    event_row,
    panel_arrays,
    sequence_row,
)
from market import krx
from market.events.detector import MarketEvent, StockDay, VIDetector, VIEvent, reason_direction
from market.events.panels import panels_from_ticks
from market.events.table import event_id, events_table
from market.krx.dataset import connect
from market.krx.schema import TICK_SCHEMA

# rows older than this are dropped: the longest VI auction is 2.5 min, the look-back 2 min
BUFFER_S = PANEL_BEFORE_S + 300 + MAX_DECISION_OFFSET + 1
CHUNK_ROWS = 20_000  # rows turned into a columnar chunk at once


@dataclass
class _Pending:
    vi: VIEvent
    next_offset: int = 0
    info: EventInfo | None = None
    event: dict[str, float] = field(default_factory=dict)


class LiveFeaturePath:
    def __init__(self, stock_days: dict[tuple[str, dt.date], StockDay]) -> None:
        self.stock_days = stock_days
        self.detector = VIDetector(stock_days)
        self.history = VIHistory()
        self._rows: dict[str, list[dict]] = defaultdict(list)  # not yet in a chunk
        self._chunks: dict[str, list[pa.Table]] = defaultdict(list)
        self._pending: dict[str, list[_Pending]] = defaultdict(list)
        self._vis: dict[str, list[VIEvent]] = defaultdict(list)  # the stock's VIs so far, running ones too
        self.reported: list[VIEvent] = []  # VIs started or released since the caller last emptied it
        self.decisions = 0
        self._duckdb = connect(threads=1)  # one connection for every panel query

    def on_vi_notice(self, stock_code: str, trigger_ts_us: int) -> None:
        """A VI elsewhere in the market (the exchange's VI-status notice, KIS FHPST01390000)."""
        self.history.add(stock_code, krx.seoul_date(trigger_ts_us), trigger_ts_us)

    def on_tick(self, row: dict) -> list[FeatureRows]:
        """One tick row (the tick schema's fields) of a watched stock, in arrival order."""
        code = row["stock_code"]
        ts = krx.epoch_us(row["timestamp"])
        out = self._decide(code, ts)
        self._rows[code].append(row)
        if len(self._rows[code]) >= CHUNK_ROWS:
            self._consolidate(code, ts)
        if row["event_type"] != "book":  # the detector reads no book rows
            ev = MarketEvent(
                ts, code, row["event_type"], row["price"], row["volume"], row["side"],
                row["vi_status"], row["vi_type"], reason_direction(row["vi_reason"]),
            )  # fmt: skip
            for vi in self.detector.on_event(ev):
                self.reported.append(vi)
                if not any(seen is vi for seen in self._vis[code]):  # a release returns its VI again
                    self._vis[code].append(vi)
                self.history.add(code, krx.seoul_date(vi.trigger_ts), vi.trigger_ts, vi.release_ts)
                if vi.released:
                    self._pending[code].append(_Pending(vi))
        return out

    def flush(self, now_us: int) -> list[FeatureRows]:
        """Decisions whose time has passed by the clock, for stocks whose feed went quiet."""
        return [r for code in list(self._pending) for r in self._decide(code, now_us)]

    def _decide(self, code: str, now_us: int) -> list[FeatureRows]:
        due = [
            p
            for p in self._pending.get(code, ())
            if decision_time_us(p.vi.release_ts, p.next_offset) <= now_us
        ]
        out = []
        for p in due:
            panel = self._panel(code, p.vi)
            decisions, sequences = {}, {}
            while (
                p.next_offset <= MAX_DECISION_OFFSET
                and decision_time_us(p.vi.release_ts, p.next_offset) <= now_us
            ):
                k = p.next_offset
                if p.info is None:
                    vi_row = events_as_dicts(events_table([p.vi]))[0]
                    p.info = self.history.info(
                        vi_row, self.stock_days[(code, krx.seoul_date(p.vi.trigger_ts))]
                    )
                    p.event = event_row(panel, p.info)
                decisions[k] = decision_row(panel, p.info, k)
                sequences[k] = sequence_row(panel, p.info, k)
                p.next_offset += 1
            self.decisions += len(decisions)
            out.append(FeatureRows(p.info, p.event, decisions, sequences))
        self._pending[code] = [p for p in self._pending[code] if p.next_offset <= MAX_DECISION_OFFSET]
        return out

    def _panel(self, code: str, vi: VIEvent) -> dict:
        """The VI's panel, with the stock's other VIs known so far: a second VI that starts in
        this one's window shows its halt, as in the batch panels."""
        ticks = self._consolidate(code, None)
        # the panel reads nothing before its look-back (the buffer's own rule): a smaller query
        start = vi.trigger_ts - (PANEL_BEFORE_S + 1) * US
        ticks = ticks.filter(pc.greater_equal(ticks["timestamp"].cast(pa.int64()), start))
        day = krx.seoul_date(vi.trigger_ts)
        known = events_table([v for v in self._vis[code] if krx.seoul_date(v.trigger_ts) == day])
        panels = panels_from_ticks(ticks, known, PANEL_BEFORE_S, MAX_DECISION_OFFSET, self._duckdb)
        return panel_arrays(panels)[event_id(code, vi.trigger_ts)]

    def _consolidate(self, code: str, now_us: int | None) -> pa.Table:
        """The stock's buffered rows as one table; with ``now_us``, without the rows no pending or
        future decision can read."""
        chunks = self._chunks[code]
        if self._rows[code]:
            chunks.append(pa.Table.from_pylist(self._rows[code], schema=TICK_SCHEMA))
            self._rows[code] = []
        ticks = pa.concat_tables(chunks) if chunks else TICK_SCHEMA.empty_table()
        if now_us is not None and not self._pending[code]:
            # a running VI's panel reaches back to before its trigger, however long its auction
            # (one merging into the closing call runs ten minutes and more)
            running = [v.trigger_ts for v in self._vis[code] if v.release_ts is None]
            keep_from = min([now_us - BUFFER_S * US, *(t - (PANEL_BEFORE_S + 1) * US for t in running)])
            ticks = ticks.filter(pc.greater_equal(ticks["timestamp"].cast(pa.int64()), keep_from))
        self._chunks[code] = [ticks]
        return ticks
