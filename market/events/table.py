"""Batch VI detection: replay a tick dataset through the streaming detector, write
``events.parquet``, and measure agreement with the exchange's VI log where one exists."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from market.events.detector import MarketEvent, StockDay, VIDetector, VIEvent, completed, reason_direction
from market.krx.dataset import accepted_tables, read_instruments, read_summary
from market.krx.schema import TIMESTAMP

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),  # <stock_code>-<trigger time, µs>
        pa.field("stock_code", pa.string(), nullable=False),
        pa.field("trigger_ts", TIMESTAMP, nullable=False),
        pa.field("release_ts", TIMESTAMP, nullable=True),
        pa.field("vi_type", pa.string(), nullable=False),
        pa.field("direction", pa.int8(), nullable=False),
        pa.field("static_ref", pa.int64(), nullable=False),
        pa.field("dynamic_ref", pa.int64(), nullable=False),
        pa.field("trigger_price", pa.int64(), nullable=False),
        pa.field("auction_price", pa.int64(), nullable=True),
        pa.field("auction_volume", pa.int64(), nullable=False),
    ]
)
_DETECTOR_COLUMNS = [
    "timestamp",
    "stock_code",
    "event_type",
    "price",
    "volume",
    "side",
    "vi_status",
    "vi_type",
    "vi_reason",
]


def load_stock_days(instruments_path: Path) -> dict[tuple[str, dt.date], StockDay]:
    return {
        (r["stock_code"], r["date"]): StockDay.from_instrument(r)
        for r in read_instruments(instruments_path).to_pylist()
    }


def replay(table: pa.Table, detector: VIDetector, use_flags: bool = True) -> list[VIEvent]:
    """Feed one stock's rows (time-ordered) through ``detector``; book rows are skipped, as the
    detector reads none of them."""
    table = table.filter(pc.not_equal(table["event_type"], "book"))
    ts = table["timestamp"].cast(pa.int64()).to_pylist()
    cols = [table[c].to_pylist() for c in _DETECTOR_COLUMNS[1:6]]
    flags = table["vi_status"].to_pylist() if use_flags else [-1] * len(ts)
    types = table["vi_type"].to_pylist()
    directions = [reason_direction(r) for r in table["vi_reason"].to_pylist()]
    out: list[VIEvent] = []
    for i, t in enumerate(ts):
        ev = MarketEvent(
            t, cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], flags[i], types[i], directions[i]
        )
        out += detector.on_event(ev)
    return out


def detect(root: Path, use_flags: bool = True) -> list[VIEvent]:
    detector = VIDetector(load_stock_days(root / "instruments.parquet"), use_flags=use_flags)
    found: list[VIEvent] = []
    for table in accepted_tables(root, columns=_DETECTOR_COLUMNS):
        table = table.sort_by([("stock_code", "ascending"), ("timestamp", "ascending")])
        found += replay(table, detector, use_flags)
    return sorted(completed(found), key=lambda v: (v.trigger_ts, v.stock_code))


def event_id(stock_code: str, trigger_ts: int) -> str:
    """A VI's key: its stock and trigger time (µs since the epoch); batch and live agree on it."""
    return f"{stock_code}-{trigger_ts}"


def events_table(events: list[VIEvent]) -> pa.Table:
    def ts(values: list[int | None]) -> pa.Array:
        return pa.array(values, pa.int64()).cast(pa.timestamp("us")).cast(TIMESTAMP)

    return pa.Table.from_pydict(
        {
            "event_id": [event_id(v.stock_code, v.trigger_ts) for v in events],
            "stock_code": [v.stock_code for v in events],
            "trigger_ts": ts([v.trigger_ts for v in events]),
            "release_ts": ts([v.release_ts for v in events]),
            "vi_type": [v.vi_type for v in events],
            "direction": pa.array([v.direction for v in events], pa.int8()),
            "static_ref": [v.static_ref for v in events],
            "dynamic_ref": [v.dynamic_ref for v in events],
            "trigger_price": [v.trigger_price for v in events],
            "auction_price": pa.array([v.auction_price for v in events], pa.int64()),
            "auction_volume": [v.auction_volume for v in events],
        },
        schema=EVENT_SCHEMA,
    )


@dataclass(frozen=True)
class Agreement:
    detected: int
    logged: int
    matched: int
    same_type: int
    same_auction_price: int
    priced: int  # matched VIs whose log records an auction price (KIS's REST record has none)

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else float("nan")

    @property
    def recall(self) -> float:
        return self.matched / self.logged if self.logged else float("nan")


def match_log(events: pa.Table, vi_log: pa.Table, tolerance_s: float = 0.0) -> dict[str, dict]:
    """event_id -> the logged VI it matches: same stock, nearest trigger time within
    ``tolerance_s``, each logged VI matched at most once."""
    logged: dict[str, list[dict]] = {}
    for r in vi_log.to_pylist():
        logged.setdefault(r["stock_code"], []).append(r)
    used: set[tuple[str, int]] = set()
    tol = dt.timedelta(seconds=tolerance_s)
    matches: dict[str, dict] = {}
    for e in events.to_pylist():
        best = None
        for j, r in enumerate(logged.get(e["stock_code"], [])):
            gap = abs(r["trigger_ts"] - e["trigger_ts"])
            if (e["stock_code"], j) not in used and gap <= tol and (best is None or gap < best[0]):
                best = (gap, j, r)
        if best is not None:
            used.add((e["stock_code"], best[1]))
            matches[e["event_id"]] = best[2]
    return matches


def agreement(events: pa.Table, vi_log: pa.Table, tolerance_s: float = 0.0) -> Agreement:
    """How the detected events agree with the VI log (:func:`match_log`)."""
    matches = match_log(events, vi_log, tolerance_s)
    same_type = same_price = priced = 0
    for e in events.to_pylist():
        logged = matches.get(e["event_id"])
        if logged is None:
            continue
        same_type += logged["vi_type"] == e["vi_type"]
        if logged["auction_price"] is not None:
            priced += 1
            same_price += logged["auction_price"] == e["auction_price"]
    return Agreement(events.num_rows, vi_log.num_rows, len(matches), same_type, same_price, priced)


def log_tolerance_s(root: Path, use_flags: bool = True) -> float:
    """How far a detected trigger may sit from the logged one: flags time a VI exactly, to the
    source's resolution (KIS stamps whole seconds and its VI status push carries no time at all,
    so its receive second stands in); the rules alone place it within the auction's first half minute."""
    whole_seconds = read_summary(root).get("format") == "kis-log"
    return (1.0 if whole_seconds else 0.0) if use_flags else 30.0


def write_events(root: Path, out_dir: Path, use_flags: bool = True) -> tuple[pa.Table, Agreement | None]:
    table = events_table(detect(root, use_flags))
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / "events.parquet")
    log_path = root / "vi_log.parquet"
    if not log_path.exists():
        return table, None
    return table, agreement(table, pq.read_table(log_path), log_tolerance_s(root, use_flags))
