"""The live executor: feed -> VI detector -> live features (pushed to the Feast online store) ->
model -> strategy -> risk manager -> broker -> journal, one tick row at a time.

The strategy objects are the backtester's (backtest/strategies.py), fed the same
:class:`~backtest.strategy.Decision` and :class:`~backtest.strategy.MarketSecond` views: the
decisions come from ``feature_repo.live`` (the batch features' own code path), the market views
from the stock's :class:`~backtest.tape.LiveTape`, which is also what the simulated broker matches
against. Two clocks, as in the backtest: the executor's clock is the local (receive) time of the
rows it has received (and the source's clock while the feed is quiet), never the wall; the tape
estimates each row's exchange time from it (``backtest.clock``), and orders match at exchange time.

Nothing is lost in a crash: the journal (serving/journal.py) holds every order before it is sent;
:meth:`Executor.recover` rebuilds positions and the strategy's holdings from the journaled fills,
asks the broker what became of open orders, and restarts the exits of held positions. A buy for
a VI the journal already entered is refused by the risk manager's duplicate guard, so a restart
that sees a VI's decisions again places nothing twice.

The hot path is synchronous (one row in, orders out); only the broker's replies and the source
are awaited between rows. The status page and the kill switch reach it through :meth:`snapshot`
and :meth:`kill`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from backtest.account import Account
from backtest.clock import FeedClock
from backtest.execution import BUY, CancelRequest, Fill, OrderRequest
from backtest.strategy import Action, Decision, EventInfo, MarketSecond, Strategy
from backtest.tape import PHASE_AUCTION, RECV_COLUMN, LiveTape
from feature_repo.build import FeatureRows
from feature_repo.features import decision_time_us
from feature_repo.live import LiveFeaturePath
from market import krx
from market.events.detector import StockDay, VIEvent
from market.events.table import event_id as make_event_id
from serving.alerts import AlertKind, Alerts
from serving.brokers import Ack, Broker, BrokerEvent, Ended
from serving.journal import Journal
from serving.risk import Exposure, Quote, RiskManager, WorkingOrder

log = logging.getLogger(__name__)
US = krx.US_PER_SECOND
ModelCall = Callable[[str, int], Mapping[str, float]]  # (event_id, decision offset) -> outputs
_SECOND, _END = 0, 1


@dataclass(frozen=True)
class LiveConfig:
    window_s: int = 330  # after the release, how long an event stays open before on_end (as in backtest)
    max_decision_offset: int = 9  # the model answers decisions 0..9 s after the release
    recent: int = 200  # signals, fills and refusals kept for the status page
    capital: float = 100_000_000.0  # KRW the account starts the day with


@dataclass
class Batch:
    """What a source delivers at once: tick rows in arrival order (maybe none), the source's clock
    (exchange time, µs) and when the batch arrived (``time.perf_counter_ns``)."""

    rows: list[dict]
    clock_us: int
    arrived_ns: int
    gap: str = ""  # the feed was down: why (a reconnect followed)


class Source(Protocol):
    name: str
    stock_days: dict[tuple[str, dt.date], StockDay]
    feed_clock: FeedClock  # how its rows' two clocks are read

    def stamp_us(self, stock_code: str) -> int:
        """µs one exchange stamp of the stock's rows covers (1 s for KIS's HHMMSS)."""
        ...

    def batches(self) -> AsyncIterator[Batch]: ...

    def health(self) -> dict: ...


@dataclass
class Stats:
    rows: int = 0
    decisions: int = 0
    latencies_ns: list[int] = field(
        default_factory=list
    )  # a decision's batch arriving -> its order handed over
    model_errors: int = 0
    skipped_rows: int = 0  # rows of stock-days with no base price known


class Executor:
    def __init__(
        self,
        *,
        stock_days: dict[tuple[str, dt.date], StockDay],
        tapes: dict[str, LiveTape],
        strategy: Strategy,
        risk: RiskManager,
        broker: Broker,
        journal: Journal,
        alerts: Alerts,
        model: ModelCall | None = None,
        push: Callable[[FeatureRows], None] | None = None,
        config: LiveConfig | None = None,
        mode: dict | None = None,
        feed_clock: FeedClock | None = None,
        stamp_us: Callable[[str], int] | None = None,
    ) -> None:
        self.stock_days, self.tapes = stock_days, tapes
        self.strategy, self.risk, self.broker, self.journal = strategy, risk, broker, journal
        self.alerts, self.model, self.push = alerts, model, push
        self.config = config or LiveConfig()
        self.mode = mode or {}
        self.features = LiveFeaturePath(stock_days)
        self.feed_clock, self.stamp_us = feed_clock or FeedClock(), stamp_us or (lambda code: 1)
        self.clock_us = 0  # local time
        self.account = Account(self.config.capital)  # cash and positions, moved by fills only
        self.infos: dict[str, EventInfo] = {}
        self.requests: dict[int, OrderRequest] = {}
        self.order_view: dict[int, dict] = {}
        self._working: dict[str, set[int]] = {}
        self.names: dict[str, str] = {}  # stock code -> name, from the rows
        self.filled: dict[int, int] = {}
        self.entered: set[str] = set()
        self.signals: deque = deque(maxlen=self.config.recent)
        self.fills: deque = deque(maxlen=self.config.recent)
        self.refusals: deque = deque(maxlen=self.config.recent)
        self.stats = Stats()
        self.feed_health: dict = {}
        self._timers: list[tuple[int, int, int, str]] = []
        self._seq = itertools.count()
        self._ticking: set[str] = set()
        self._next_cid = journal.next_client_id()
        self._kill_request: str | None = None
        self._arrived_ns = 0

    # -- Context (what a strategy may ask) ---------------------------------------------------
    @property
    def cash(self) -> float:
        return self.account.cash

    def position(self, stock_code: str) -> int:
        return self.account.positions.get(stock_code, 0)

    def working(self, event_id: str) -> list[int]:
        return sorted(self._working.get(event_id, ()))

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, source: Source, stop: asyncio.Event | None = None) -> None:
        """Until the source ends or ``stop`` is set."""
        await self.recover()
        async for batch in source.batches():
            self.on_batch(batch)
            self.feed_health = source.health()
            await self.poll()
            if stop is not None and stop.is_set():
                break
        await self.poll(final=True)
        self.feed_health = source.health()

    def on_batch(self, batch: Batch) -> None:
        if batch.gap:
            self.alerts.send(AlertKind.FEED_GAP, batch.gap)
        self._arrived_ns = batch.arrived_ns
        for row in batch.rows:
            self.on_row(row)
        if batch.clock_us > self.clock_us:
            self._advance(batch.clock_us)
            self.clock_us = batch.clock_us
            for rows in self.features.flush(self.clock_us):
                self._on_features(rows)
        if self._kill_request is not None:
            reason, self._kill_request = self._kill_request, None
            self._kill(reason)

    def on_row(self, row: dict) -> None:
        seen = row.get(RECV_COLUMN) or row["timestamp"]  # when it reached us
        ts = seen if isinstance(seen, int) else krx.epoch_us(seen)
        code = row["stock_code"]
        if (code, krx.seoul_date(ts)) not in self.stock_days:
            self.stats.skipped_rows += 1
            return
        self._advance(ts)
        self.clock_us = max(self.clock_us, ts)
        self.stats.rows += 1
        if code not in self.names:
            self.names[code] = row.get("stock_name", "")
        self._tape(code, ts).append(row)
        self.broker.on_row(code, ts)
        for rows in self.features.on_tick(row):
            self._on_features(rows)
        for vi in self.features.reported:
            self._on_vi(vi)
        self.features.reported.clear()

    async def poll(self, final: bool = False) -> None:
        """The broker's replies due by the clock (all of them at the end of the feed)."""
        events = await self.broker.poll(2**62 if final else self.clock_us)
        for e in events:
            self._on_broker(e)

    # -- market ------------------------------------------------------------------------------
    def _tape(self, code: str, ts: int) -> LiveTape:
        day = krx.seoul_date(ts)
        tape = self.tapes.get(code)
        if tape is None or tape.day != day:
            sd = self.stock_days[(code, day)]
            tape = self.tapes[code] = LiveTape(code, sd, self.feed_clock, self.stamp_us(code))
            self.account.markets[code] = sd.market
        return tape

    def quote(self, code: str) -> Quote:
        t = self.tapes[code].tape()
        last = int(t.last_price[-1]) if len(t) else 0
        return Quote(code, t.market, t.day, last, t.lower_limit, t.upper_limit)

    def _marks(self) -> dict[str, int]:
        """What a share of each stock is worth now: the bid shown (else the last trade)."""
        return {c: int(t.tape().mark[-1]) for c, t in self.tapes.items() if len(t)}

    def exposure(self) -> Exposure:
        marks = self._marks()
        working = [
            WorkingOrder(
                cid, r.stock_code, r.side, r.qty - self.filled.get(cid, 0), r.limit_price, r.event_id
            )
            for cid, r in self.requests.items()
            if self.order_view[cid]["state"] in ("sending", "acked")
        ]
        return Exposure(
            dict(self.account.positions), marks, working, frozenset(self.entered), self._pnl(marks)
        )

    def _pnl(self, marks: dict[str, int]) -> float:
        """The day's P&L, costs included: cash moved since the start, positions at their marks net
        of what selling them would cost."""
        day = krx.seoul_date(self.clock_us) if self.clock_us else dt.date.today()
        return self.account.equity(marks, day) - self.config.capital

    # -- VIs and decisions -------------------------------------------------------------------
    def _event_info(self, vi: VIEvent) -> EventInfo:
        day = krx.seoul_date(vi.trigger_ts)
        market = self.stock_days[(vi.stock_code, day)].market
        return EventInfo(
            make_event_id(vi.stock_code, vi.trigger_ts), vi.stock_code, market, day, vi.trigger_ts,
            vi.release_ts or 0, vi.direction, vi.vi_type, vi.auction_price or 0,
        )  # fmt: skip

    def _on_vi(self, vi: VIEvent) -> None:
        info = self._event_info(vi)
        self.infos[info.event_id] = info
        self.journal.vi(info)
        if vi.released:
            self._timer(info.release_ts + self.config.window_s * US, _END, info.event_id)

    def _on_features(self, rows: FeatureRows) -> None:
        if self.push is not None:
            self.push(rows)
        info = self.infos[rows.info.event_id]
        for k in sorted(rows.decisions):
            if k > self.config.max_decision_offset:
                continue
            self.stats.decisions += 1
            outputs: Mapping[str, float] = {}
            if self.model is not None:
                try:
                    outputs = self.model(info.event_id, k)
                except Exception as exc:  # the service is down or refused: no decision, no order
                    self.stats.model_errors += 1
                    why = f"model service failed for {info.event_id} +{k}s: {type(exc).__name__}: {exc}"
                    self.journal.signal(self.clock_us, info.event_id, k, {}, why)
                    self.signals.append(self._signal_view(info.event_id, k, {}, why))
                    self.alerts.send(AlertKind.SERVICE_DOWN, why)
                    continue
            features = {**rows.event, **rows.decisions[k]}
            d = Decision(
                info, k, decision_time_us(info.release_ts, k), self.quote(info.stock_code).last_price,
                features, outputs,
            )  # fmt: skip
            actions = self.strategy.on_decision(d, self)
            what = "; ".join(_describe(a) for a in actions) or "no order"
            self.journal.signal(self.clock_us, info.event_id, k, dict(outputs), what)
            self.signals.append(self._signal_view(info.event_id, k, outputs, what))
            self._act(info, actions, timed=True)

    def _signal_view(self, eid: str, k: int, outputs: Mapping[str, float], what: str) -> dict:
        return {
            "time": _hms(self.clock_us),
            "event_id": eid,
            "offset_s": k,
            "outputs": {n: round(float(v), 4) for n, v in outputs.items()},
            "decision": what,
        }

    # -- timers: market seconds of exposed events, window ends --------------------------------
    def _timer(self, ts: int, kind: int, eid: str) -> None:
        heapq.heappush(self._timers, (ts, kind, next(self._seq), eid))

    def _advance(self, ts: int) -> None:
        """Fire the timers due before ``ts`` (the rows up to then are in)."""
        while self._timers and self._timers[0][0] < ts:
            at, kind, _, eid = heapq.heappop(self._timers)
            info = self.infos[eid]
            if kind == _END:
                self._act(info, self.strategy.on_end(info, self), at)
            else:
                self._second(info, at)

    def _start_seconds(self, info: EventInfo, now: int) -> None:
        if info.event_id not in self._ticking:
            self._ticking.add(info.event_id)
            self._timer((now // US + 1) * US, _SECOND, info.event_id)

    def _exposed(self, info: EventInfo) -> bool:
        return self.position(info.stock_code) > 0 or bool(self._working.get(info.event_id))

    def _second(self, info: EventInfo, at: int) -> None:
        if not self._exposed(info):
            self._ticking.discard(info.event_id)
            return
        tape = self.tapes.get(info.stock_code)  # none yet after a restart, before the feed's first row
        t = tape.tape() if tape is not None else None
        i = t.seen_at(at) if t is not None else -1
        if i >= 0:
            bid, ask = t.quotes(i)
            m = MarketSecond(
                info, at, int(t.last_price[i]), bid, ask, int(t.program_net_buy[i]), int(t.cum_volume[i]),
                bool(t.phase[i] == PHASE_AUCTION),
            )  # fmt: skip
            self._act(info, self.strategy.on_second(m, self), at)
        self._timer(at + US, _SECOND, info.event_id)

    # -- orders ------------------------------------------------------------------------------
    def _act(
        self, info: EventInfo, actions: list[Action], now: int | None = None, timed: bool = False
    ) -> None:
        """``timed``: the actions answer a decision, whose tick-to-order latency is recorded."""
        now = self.clock_us if now is None else now
        for a in actions:
            if isinstance(a, CancelRequest):
                self.broker.cancel(a.client_id, now)
                continue
            reason = self.risk.check(a, now, self.quote(a.stock_code), self.exposure())
            if reason:
                self.journal.refusal(now, a, "risk", reason)
                self.refusals.append({"time": _hms(now), "stock_code": a.stock_code, "reason": reason})
                continue
            cid, self._next_cid = self._next_cid, self._next_cid + 1
            self.journal.sending(cid, now, a)  # before the broker: a crash from here on is recoverable
            self.broker.submit(cid, a, now)
            if timed:
                self.stats.latencies_ns.append(time.perf_counter_ns() - self._arrived_ns)
            self._track(cid, a, now, "sending")
        if self._working.get(info.event_id):
            self._start_seconds(info, now)

    def _track(self, cid: int, r: OrderRequest, now: int, state: str) -> None:
        self.requests[cid] = r
        self.order_view[cid] = {
            "client_id": cid, "time": _hms(now), "stock_code": r.stock_code,
            "side": "buy" if r.side == BUY else "sell", "qty": r.qty, "price": r.limit_price,
            "state": state, "reason": r.reason,
        }  # fmt: skip
        if state in ("sending", "acked"):
            self._working.setdefault(r.event_id, set()).add(cid)
        if r.side == BUY:
            self.entered.add(r.event_id)

    def _close_order(self, cid: int, state: str) -> None:
        self.order_view[cid]["state"] = state
        r = self.requests[cid]
        self._working.get(r.event_id, set()).discard(cid)

    def _on_broker(self, e: BrokerEvent) -> None:
        if isinstance(e, Ack):
            self.journal.acked(e.client_id, e.broker_id, e.ts, self.clock_us)
            if self.order_view[e.client_id]["state"] == "sending":
                self.order_view[e.client_id]["state"] = "acked"
        elif isinstance(e, Ended):
            self.journal.set_state(e.client_id, e.state, self.clock_us, note=e.reason)
            self._close_order(e.client_id, e.state)
            if e.state in ("rejected", "lost"):
                r = self.requests[e.client_id]
                self.journal.refusal(self.clock_us, r, "broker", e.reason)
                self.refusals.append(
                    {"time": _hms(self.clock_us), "stock_code": r.stock_code, "reason": e.reason}
                )
                self.alerts.send(AlertKind.ERROR, f"order {e.client_id} {r.stock_code} {e.state}: {e.reason}")
        else:
            self._on_fill(e)

    def _on_fill(self, f: Fill, replay: bool = False) -> None:
        """A fill from the broker (or, with ``replay``, from the journal at a restart)."""
        self.account.apply(f)
        self.filled[f.client_id] = self.filled.get(f.client_id, 0) + f.qty
        r = self.requests.get(f.client_id)
        final = r is not None and self.filled[f.client_id] >= r.qty
        self.fills.append({
            "time": _hms(f.fill_ts), "client_id": f.client_id, "stock_code": f.stock_code,
            "side": "buy" if f.side == BUY else "sell", "qty": f.qty, "price": f.price,
            "fees": f.brokerage + f.tax,
        })  # fmt: skip
        if replay:
            self.strategy.on_fill(f, self)
            return
        self.journal.fill(f, final)
        if final:
            self._close_order(f.client_id, "filled")
        kind = AlertKind.ENTRY if f.side == BUY else AlertKind.EXIT
        self.alerts.send(
            kind,
            f"{'bought' if f.side == BUY else 'sold'} {f.qty} {f.stock_code} at {f.price:,} ({f.reason})",
        )
        info = self.infos.get(f.event_id)
        actions = self.strategy.on_fill(f, self)
        if info is not None:
            self._act(info, actions)
            if self._exposed(info):
                self._start_seconds(info, self.clock_us)

    # -- restart -----------------------------------------------------------------------------
    async def recover(self) -> None:
        """Positions, holdings and open orders from the journal, reconciled with the broker."""
        orders = self.journal.orders()
        if not orders:
            return
        for o in orders:
            self._track(o.client_id, o.request, o.sent_ts, o.state)
        self.infos.update((i.event_id, i) for i in self.journal.vis())
        fills = self.journal.fills()
        for f in fills:
            self._on_fill(f, replay=True)
        restore = getattr(self.broker, "restore", None)
        if restore is not None:
            restore(fills)
        self.clock_us = max([self.clock_us, *(f.ack_ts for f in fills), *(o.sent_ts for o in orders)])
        for e in await self.broker.reconcile(self.journal.open_orders(), self.clock_us):
            self._on_broker(e)
        for info in self.infos.values():
            if self._exposed(info) and info.release_ts:
                self._start_seconds(info, self.clock_us)
                self._timer(
                    max(info.release_ts + self.config.window_s * US, self.clock_us), _END, info.event_id
                )
        held = {s: q for s, q in self.account.positions.items() if q}
        log.info("recovered %d orders, %d fills; holding %s", len(orders), len(fills), held or "nothing")
        self.alerts.send(
            AlertKind.INFO, f"restarted: {len(orders)} orders in the journal, holding {held or 'nothing'}"
        )

    # -- the kill switch and the status page --------------------------------------------------
    def kill(self, reason: str) -> None:
        """From any thread (the status page, a signal): acted on at the next batch."""
        self._kill_request = reason or "kill switch"

    def _kill(self, reason: str) -> None:
        self.risk.kill(reason)
        self.journal.kill(self.clock_us, reason)
        for cid, view in self.order_view.items():
            if view["state"] in ("sending", "acked"):
                self.broker.cancel(cid, self.clock_us)
        self.alerts.send(AlertKind.KILL_SWITCH, f"kill switch: {reason}; open orders cancelled, no new ones")

    def snapshot(self) -> dict:
        marks = self._marks()
        positions = []
        for code, qty in sorted(self.account.positions.items()):
            if qty:
                cost = -sum(
                    f["price"] * f["qty"] * (1 if f["side"] == "buy" else -1)
                    for f in self.fills
                    if f["stock_code"] == code
                )
                mark = marks.get(code, 0)
                avg = -cost / qty if qty else 0.0
                positions.append(
                    {"stock_code": code, "qty": qty, "avg_price": round(avg, 1), "mark": mark,
                     "unrealised": round((mark - avg) * qty)}
                )  # fmt: skip
        total = self._pnl(marks)
        fees = sum(f["fees"] for f in self.fills)
        return {
            "now": krx.from_us(self.clock_us).isoformat(timespec="seconds") if self.clock_us else "",
            "mode": {k: v for k, v in self.mode.items() if k in ("source", "broker", "account")},
            "vis": [_vi_view(i, self.names.get(i.stock_code, "")) for i in self.infos.values()],
            "signals": list(self.signals),
            "orders": list(self.order_view.values())[-self.config.recent :],
            "fills": list(self.fills),
            "positions": positions,
            "pnl": {
                "realised": round(total - sum(p["unrealised"] for p in positions)),
                "unrealised": sum(p["unrealised"] for p in positions),
                "fees": fees,
                "total": round(total),
            },
            "risk": {**self.risk.state(self.clock_us), "refusals": list(self.refusals)},
            "feed": self.feed_health,
        }


def _hms(ts: int) -> str:
    return krx.from_us(ts).strftime("%H:%M:%S") if ts else ""


def _describe(a: Action) -> str:
    if isinstance(a, CancelRequest):
        return f"cancel {a.client_id}"
    side = "buy" if a.side == BUY else "sell"
    price = "market" if a.limit_price is None else f"{a.limit_price:,}"
    return f"{side} {a.qty} {a.stock_code} at {price} ({a.reason})"


def _vi_view(i: EventInfo, name: str) -> dict:
    return {
        "event_id": i.event_id,
        "stock_code": i.stock_code,
        "stock_name": name,
        "direction": i.direction,
        "vi_type": i.vi_type,
        "trigger_time": _hms(i.trigger_ts),
        "release_time": _hms(i.release_ts) or None,
    }
