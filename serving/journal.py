"""The live executor's journal: one SQLite file per trading day, in WAL mode, written before and
after every step that matters, so that a ``kill -9`` at any point loses nothing.

What is written, and when:
- a VI when the detector reports it, and again at its release;
- every decision the strategy saw (signal), with the model's outputs and what came of it;
- an order *before* it is handed to the broker (state ``sending``), its acknowledgement
  (``acked``, with the broker's order number), each fill, and its end (``filled``, ``cancelled``,
  ``rejected``; ``lost`` when a restart finds the broker never received it);
- every refusal of the risk manager or the broker, with its reason;
- the kill switch.
Positions and P&L are never stored apart from the fills: they are computed from them (so they
cannot disagree). Each commit is one transaction; WAL with ``synchronous=NORMAL`` keeps every
committed transaction through a process crash (only a power loss may drop the last ones).

On restart :meth:`Journal.open_orders` says what may still be working at the broker and
:meth:`Journal.fills` what the account holds; the executor reconciles them with the broker
(serving/brokers.py). :func:`export_day` writes the day as Parquet in the backtest's trade
columns, so the backtest report can set the live day beside a backtest of the same day.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from backtest.account import Account
from backtest.engine import BacktestConfig, Rejection, RunResult
from backtest.execution import BUY, Fill, OrderRequest, OrderType, TimeInForce
from backtest.strategy import EventInfo

OPEN_STATES = ("sending", "acked")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY, started_us INTEGER, source TEXT, broker TEXT, strategy TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS vis (
    event_id TEXT PRIMARY KEY, stock_code TEXT, market TEXT, day TEXT, trigger_ts INTEGER,
    release_ts INTEGER, direction INTEGER, vi_type TEXT, auction_price INTEGER);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY, ts INTEGER, event_id TEXT, offset_s INTEGER, outputs TEXT, decision TEXT);
CREATE TABLE IF NOT EXISTS orders (
    client_id INTEGER PRIMARY KEY, sent_ts INTEGER, event_id TEXT, stock_code TEXT, side INTEGER,
    qty INTEGER, order_type TEXT, limit_price INTEGER, tif TEXT, reason TEXT, state TEXT,
    broker_id TEXT, filled INTEGER DEFAULT 0, updated_ts INTEGER, note TEXT DEFAULT '',
    acked_ts INTEGER);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY, client_id INTEGER, event_id TEXT, stock_code TEXT, side INTEGER,
    qty INTEGER, price INTEGER, order_ts INTEGER, fill_ts INTEGER, ack_ts INTEGER,
    brokerage INTEGER, tax INTEGER, reason TEXT, liquidity TEXT);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY, ts INTEGER, event_id TEXT, stock_code TEXT, side INTEGER, qty INTEGER,
    source TEXT, reason TEXT);
CREATE TABLE IF NOT EXISTS kills (id INTEGER PRIMARY KEY, ts INTEGER, reason TEXT);
"""


@dataclass(frozen=True)
class JournaledOrder:
    client_id: int
    sent_ts: int
    request: OrderRequest
    state: str
    broker_id: str
    filled: int
    filled_amount: int  # KRW, the sum of its fills' qty x price


class Journal:
    """One day's journal (``<dir>/<day>.sqlite``); one writer, the executor."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(orders)")}
        if "acked_ts" not in columns:  # a journal written before acknowledgement times were kept
            self.db.execute("ALTER TABLE orders ADD COLUMN acked_ts INTEGER")

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple) -> None:
        with self.db:  # one transaction, committed on leaving
            self.db.execute("BEGIN")
            self.db.execute(sql, args)

    # -- writes ------------------------------------------------------------------------------
    def start_run(self, started_us: int, source: str, broker: str, strategy: str, note: str = "") -> int:
        cur = self.db.execute(
            "INSERT INTO runs (started_us, source, broker, strategy, note) VALUES (?, ?, ?, ?, ?)",
            (started_us, source, broker, strategy, note),
        )
        return int(cur.lastrowid)

    def vi(self, e: EventInfo) -> None:
        self._write(
            "INSERT INTO vis VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO UPDATE SET "
            "release_ts = excluded.release_ts, vi_type = excluded.vi_type, "
            "auction_price = excluded.auction_price",
            (e.event_id, e.stock_code, e.market, e.day.isoformat(), e.trigger_ts, e.release_ts,
             e.direction, e.vi_type, e.auction_price),
        )  # fmt: skip

    def signal(self, ts: int, event_id: str, offset_s: int, outputs: dict, decision: str) -> None:
        self._write(
            "INSERT INTO signals (ts, event_id, offset_s, outputs, decision) VALUES (?, ?, ?, ?, ?)",
            (ts, event_id, offset_s, json.dumps(outputs), decision),
        )

    def next_client_id(self) -> int:
        row = self.db.execute("SELECT MAX(client_id) FROM orders").fetchone()
        return int(row[0] or 0) + 1

    def sending(self, client_id: int, now: int, r: OrderRequest) -> None:
        """Written before the order is handed to the broker: a crash after this line leaves an
        order the restart must look for at the broker."""
        self._write(
            "INSERT INTO orders (client_id, sent_ts, event_id, stock_code, side, qty, order_type, "
            "limit_price, tif, reason, state, broker_id, updated_ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'sending', '', ?)",
            (client_id, now, r.event_id, r.stock_code, r.side, r.qty, r.order_type.value,
             r.limit_price, r.tif.value, r.reason, now),
        )  # fmt: skip

    def acked(self, client_id: int, broker_id: str, acked_ts: int, now: int) -> None:
        """The broker's acknowledgement, heard at ``acked_ts`` (the order's round trip: what
        ``backtest.latency.RecordedLatency`` replays)."""
        self._write(
            "UPDATE orders SET acked_ts = COALESCE(acked_ts, ?) WHERE client_id = ?", (acked_ts, client_id)
        )
        self.set_state(client_id, "acked", now, broker_id)

    def set_state(self, client_id: int, state: str, now: int, broker_id: str = "", note: str = "") -> None:
        self._write(
            "UPDATE orders SET state = ?, updated_ts = ?, broker_id = COALESCE(NULLIF(?, ''), broker_id), "
            "note = CASE WHEN ? = '' THEN note ELSE ? END WHERE client_id = ?",
            (state, now, broker_id, note, note, client_id),
        )

    def fill(self, f: Fill, final: bool) -> None:
        """A fill and the order's filled count (and its end, when ``final``) in one transaction."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO fills (client_id, event_id, stock_code, side, qty, price, order_ts, fill_ts, "
                "ack_ts, brokerage, tax, reason, liquidity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f.client_id, f.event_id, f.stock_code, f.side, f.qty, f.price, f.order_ts, f.fill_ts,
                 f.ack_ts, f.brokerage, f.tax, f.reason, f.liquidity),
            )  # fmt: skip
            self.db.execute(
                "UPDATE orders SET filled = filled + ?, updated_ts = ?, "
                "state = CASE WHEN ? THEN 'filled' ELSE state END WHERE client_id = ?",
                (f.qty, f.ack_ts, final, f.client_id),
            )

    def refusal(self, ts: int, r: OrderRequest, source: str, reason: str) -> None:
        self._write(
            "INSERT INTO refusals (ts, event_id, stock_code, side, qty, source, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ts, r.event_id, r.stock_code, r.side, r.qty, source, reason),
        )

    def kill(self, ts: int, reason: str) -> None:
        self._write("INSERT INTO kills (ts, reason) VALUES (?, ?)", (ts, reason))

    # -- reads -------------------------------------------------------------------------------
    def _orders(self, where: str = "", args: tuple = ()) -> Iterator[JournaledOrder]:
        rows = self.db.execute(
            "SELECT client_id, sent_ts, event_id, stock_code, side, qty, order_type, limit_price, tif, "
            "reason, state, broker_id, filled, (SELECT COALESCE(SUM(qty * price), 0) FROM fills "
            f"WHERE fills.client_id = orders.client_id) FROM orders {where} ORDER BY client_id",
            args,
        )
        for cid, sent, eid, code, side, qty, otype, limit, tif, reason, state, bid, filled, amount in rows:
            request = OrderRequest(code, side, qty, OrderType(otype), limit, TimeInForce(tif), reason, eid)
            yield JournaledOrder(cid, sent, request, state, bid, filled, amount)

    def orders(self) -> list[JournaledOrder]:
        return list(self._orders())

    def open_orders(self) -> list[JournaledOrder]:
        return list(self._orders("WHERE state IN (?, ?)", OPEN_STATES))

    def fills(self) -> list[Fill]:
        rows = self.db.execute(
            "SELECT client_id, event_id, stock_code, side, qty, price, order_ts, fill_ts, ack_ts, "
            "brokerage, tax, reason, liquidity FROM fills ORDER BY id"
        )
        return [Fill(*row) for row in rows]

    def vis(self) -> list[EventInfo]:
        import datetime as dt

        rows = self.db.execute(
            "SELECT event_id, stock_code, market, day, trigger_ts, release_ts, direction, vi_type, "
            "auction_price FROM vis ORDER BY trigger_ts"
        )
        return [
            EventInfo(eid, code, market, dt.date.fromisoformat(day), trig, rel, d, vt, ap)
            for eid, code, market, day, trig, rel, d, vt, ap in rows
        ]

    def entered_events(self) -> set[str]:
        """Events with a buy that reached (or may have reached) the broker."""
        rows = self.db.execute(
            "SELECT DISTINCT event_id FROM orders WHERE side = ? AND state NOT IN ('rejected', 'lost')",
            (BUY,),
        )
        return {r[0] for r in rows}

    def table(self, name: str) -> pd.DataFrame:
        return pd.read_sql_query(f"SELECT * FROM {name}", self.db)

    def summary(self) -> dict[str, object]:
        """Counts and P&L of the day (fills at their prices, costs included; open positions at
        their last fill price)."""
        count = {
            t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("vis", "signals", "orders", "fills", "refusals", "kills")
        }
        states = dict(self.db.execute("SELECT state, COUNT(*) FROM orders GROUP BY state").fetchall())
        run = as_run(self, 0.0)
        return {
            **count,
            "order_states": states,
            "fees": sum(f.brokerage + f.tax for f in run.fills),
            "net_pnl": run.equity[-1][2] if run.equity else 0,
            "open_positions": {s: q for s, q in run.account.positions.items() if q},
        }


def journal_path(directory: Path, day) -> Path:
    return directory / f"{day.isoformat()}.sqlite"


def export_day(journal: Journal, out: Path, strategy: str = "live") -> dict[str, Path]:
    """The day as Parquet under ``out``: ``trades.parquet`` in the backtest's trade columns (one
    row per fill, so ``backtest.metrics`` and the report read a live day like a backtested one),
    and the signals, orders and refusals as they were journaled."""
    out.mkdir(parents=True, exist_ok=True)
    trades = as_run(journal, 0.0, strategy).trades_frame()
    written = {"trades": out / "trades.parquet"}
    trades.to_parquet(written["trades"], index=False)
    for name in ("signals", "orders", "refusals", "vis"):
        written[name] = out / f"{name}.parquet"
        journal.table(name).to_parquet(written[name], index=False)
    return written


def as_run(journal: Journal, capital: float, name: str = "live (journal)") -> RunResult:
    """The journaled day as a backtest :class:`~backtest.engine.RunResult` (its fills, refusals,
    equity at fill prices and released VIs), so ``vicap live compare`` sets it beside a backtest
    of the same VIs in one report."""
    fills = journal.fills()
    account, marks, equity = Account(capital), {}, []
    for f in fills:
        account.apply(f)
        marks[f.stock_code] = f.price
        value = account.cash + sum(q * marks[s] for s, q in account.positions.items())
        equity.append((f.fill_ts, account.cash, value))
    refusals = journal.db.execute("SELECT ts, event_id, stock_code, reason FROM refusals ORDER BY id")
    rejections = [Rejection(*row) for row in refusals]
    events = [e for e in journal.vis() if e.release_ts]
    return RunResult(name, BacktestConfig(capital=capital), fills, rejections, equity, events, 0, account)
