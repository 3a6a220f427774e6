"""The KRX exchange for one stock and one regular trading day: limit order book with price-time
priority, call auctions (opening, closing, VI) with the KRX uncross, and the VI state machine.

This is the single implementation of KRX matching in vicap. The synthetic market drives it with
generated order flow, the VI detector replays its rules, and the backtest execution model places
our orders into it. Time is int64 microseconds since the Unix epoch (UTC), as in the tick files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from market import krx
from market.exchange import kernels as k
from market.krx.schema import EVENT_TYPES, TICK_SCHEMA, VI_LOG_SCHEMA, VI_TYPES

BUY, SELL = 1, -1
_PHASE_NAMES = ("opening_auction", "continuous", "vi_auction", "closing_auction", "closed")
_RESULT_NAMES = {
    k.R_OK: "ok",
    k.R_REJECT_PRICE: "off-grid or outside the daily limits",
    k.R_REJECT_CLOSED: "market closed",
    k.R_CANCEL_UNKNOWN: "no such live order",
    k.R_REJECT_QTY: "quantity must be positive",
}


@dataclass(frozen=True)
class Instrument:
    stock_code: str  # 6-digit 단축코드
    stock_name: str
    market: str  # KOSPI | KOSDAQ
    kospi200: bool = False
    kosdaq150: bool = False
    futures_underlying: bool = False  # 주식선물 기초자산


@dataclass(frozen=True)
class ExchangeConfig:
    """Engine options. Where KRX's public texts leave a rule open, the choice is named here."""

    vi_inband_fill: bool = True  # the in-band part of an aggressive order fills before a dynamic VI
    vi_enabled: bool = True  # False on a listing day (신규상장일), where VI does not apply
    emit_book: bool = True  # emit a book (or indicative) row after every accepted order or cancel
    record_fills: bool = True  # keep per-order fills (the execution model needs them)
    expiry_day: bool | None = None  # derivatives expiry (1% closing band); None: from the calendar
    opening_random_end: bool = True  # the opening call ends at a random moment within 30 s, as KRX's does


class Exchange:
    """One stock's exchange for one day. Feed it order events in time order with :meth:`process`
    (vectorised, the fast path) or :meth:`submit_limit` / :meth:`submit_market` / :meth:`cancel`,
    then read :meth:`ticks` (the tick schema) and :meth:`vi_log`."""

    def __init__(
        self,
        instrument: Instrument,
        day: dt.date,
        base_price: int,
        config: ExchangeConfig | None = None,
        seed: int = 0,
        order_capacity: int = 4096,
        output_capacity: int | None = None,
    ) -> None:
        self.instrument = instrument
        self.day = day
        self.base_price = int(base_price)
        self.config = config or ExchangeConfig()
        market = instrument.market
        self.lower_limit, self.upper_limit = krx.price_limits(self.base_price, market, day)
        self.grid = krx.price_grid(self.lower_limit, self.upper_limit, market, day)
        self.schedule = krx.session_schedule(day)
        rng = np.random.default_rng(seed)
        close_delay, *_ = krx.random_end_delays_us(rng, 1)
        self._delays = krx.random_end_delays_us(rng, 1024)
        open_delay, *_ = krx.random_end_delays_us(rng, 1)  # drawn last: the other draws stay as they were
        if not self.config.opening_random_end:
            open_delay = 0
        expiry = self.config.expiry_day
        if expiry is None:
            expiry = krx.is_derivatives_expiry_day(day)
        n = len(self.grid)

        S = np.zeros(k.S_SIZE, dtype=np.int64)
        S[k.S_PHASE] = k.PH_PREOPEN
        S[k.S_BEST_BID] = -1
        S[k.S_BEST_ASK] = n
        S[k.S_BASE_PRICE] = S[k.S_STATIC_REF] = S[k.S_DYNAMIC_REF] = self.base_price
        S[k.S_T_PREOPEN] = krx.epoch_us(self.schedule.opening_auction_start)
        S[k.S_T_INDICATIVE] = krx.epoch_us(self.schedule.indicative_from)
        S[k.S_T_OPEN] = krx.epoch_us(self.schedule.continuous_start) + open_delay
        S[k.S_T_CLOSE_START] = krx.epoch_us(self.schedule.closing_auction_start)
        S[k.S_T_CLOSE_END] = krx.epoch_us(self.schedule.closing_auction_end) + close_delay
        S[k.S_T_VI_END] = 1 << 62
        S[k.S_STATIC_BP] = krx.rate_to_bp(krx.STATIC_VI_RATE)
        S[k.S_DYNAMIC_BP] = krx.rate_to_bp(krx.dynamic_vi_rate(instrument.kospi200, "continuous"))
        S[k.S_DYNAMIC_BP_CLOSE] = krx.rate_to_bp(
            krx.dynamic_vi_rate(
                instrument.kospi200,
                "closing_auction",
                expiry_day=expiry,
                kosdaq150=instrument.kosdaq150,
                futures_underlying=instrument.futures_underlying,
            )
        )
        S[k.S_INBAND_FILL] = int(self.config.vi_inband_fill)
        S[k.S_EMIT_BOOK] = int(self.config.emit_book)
        S[k.S_RECORD_FILLS] = int(self.config.record_fills)
        S[k.S_VI_ENABLED] = int(self.config.vi_enabled)
        S[k.S_AUCTION_US] = krx.VI_AUCTION_SECONDS * 1_000_000
        self._S = S
        self._O = np.zeros((order_capacity, k.O_COLS), dtype=np.int64)
        self._L = np.full((k.L_ROWS, n), -1, dtype=np.int64)
        self._L[k.L_QTY : k.L_QTY + 2] = 0
        rows = output_capacity or max(4 * order_capacity, 8 * n)
        self._OUT = np.zeros((rows, k.OUT_COLS), dtype=np.int64)
        self._F = np.zeros((2 * order_capacity, k.F_COLS), dtype=np.int64)
        self._V = np.zeros((256, k.V_COLS), dtype=np.int64)  # a day holds at most ~190 VIs
        self._ts_seen = 0

    # ------------------------------------------------------------ order entry

    def price_index(self, prices: np.ndarray) -> np.ndarray:
        """Grid row of each price; -1 where a price is off the grid or outside the daily limits."""
        prices = np.asarray(prices, dtype=np.int64)
        idx = np.searchsorted(self.grid, prices)
        ok = (idx < len(self.grid)) & (self.grid[np.minimum(idx, len(self.grid) - 1)] == prices)
        return np.where(ok, idx, -1)

    def process(
        self,
        ts: np.ndarray,
        kind: np.ndarray,
        side: np.ndarray,
        price: np.ndarray,
        qty: np.ndarray,
        target: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Process a batch of order events (kinds: ``kernels.K_LIMIT/K_MARKET/K_CANCEL/K_ADVANCE``,
        side +1 buy / -1 sell, price in KRW, target = order id for a cancel). Timestamps must not
        decrease. Returns (order ids, result codes); see :func:`result_reason`. Every event but an
        advance gets the next order id, so a caller can number its cancels' targets in advance."""
        m = len(ts)
        E = np.empty((m, k.E_COLS), dtype=np.int64)
        E[:, k.E_TS] = ts
        E[:, k.E_KIND] = kind
        E[:, k.E_SIDE] = side
        E[:, k.E_IDX] = self.price_index(price)
        E[:, k.E_QTY] = qty
        E[:, k.E_TARGET] = -1 if target is None else target
        if m and (np.any(np.diff(E[:, k.E_TS]) < 0) or E[0, k.E_TS] < self._last_ts()):
            raise ValueError("order events must come in non-decreasing time order")
        R = np.empty(m, dtype=np.int64)
        first_id = int(self._S[k.S_NEXT_ID])
        self._ensure_orders(m)  # at most one pool row per event
        done = 0
        while done < m:
            done += k.process_events(
                E[done:],
                R[done:],
                self._S,
                self._O,
                self._L,
                self.grid,
                self._OUT,
                self._F,
                self._V,
                self._delays,
            )
            if done < m:
                self._grow_outputs()
        self._ts_seen = int(E[-1, k.E_TS]) if m else self._last_ts()
        is_order = E[:, k.E_KIND] != k.K_ADVANCE
        return np.where(is_order, first_id + np.cumsum(is_order) - 1, -1), R

    def _one(self, ts: int, kind: int, side: int, price: int, qty: int, target: int = -1) -> int:
        ids, res = self.process(
            np.array([ts]),
            np.array([kind]),
            np.array([side]),
            np.array([price]),
            np.array([qty]),
            np.array([target]),
        )
        if res[0] != k.R_OK:
            raise OrderRejected(f"{self.instrument.stock_code} at {krx.from_us(ts)}: {result_reason(res[0])}")
        return int(ids[0])

    def submit_limit(self, ts: int, side: int, price: int, qty: int) -> int:
        """지정가 order; returns its order id. Raises :class:`OrderRejected`."""
        return self._one(ts, k.K_LIMIT, side, price, qty)

    def submit_market(self, ts: int, side: int, qty: int) -> int:
        """시장가 order: in continuous trading the unfilled rest is cancelled, or, when the order sets
        off a VI, joins the auction as a limit at the trigger price; in a call auction it rests at
        the daily limit price (market orders take price priority)."""
        return self._one(ts, k.K_MARKET, side, 0, qty)

    def cancel(self, ts: int, order_id: int) -> None:
        self._one(ts, k.K_CANCEL, 0, 0, 0, order_id)

    def advance(self, ts: int) -> None:
        """Run the schedule (auction ends, VI releases, session changes) up to ``ts``."""
        self._one(ts, k.K_ADVANCE, 0, 0, 0)

    def finish(self) -> None:
        """Run the day to its end: closing call, any VI extension of it, close."""
        end = krx.epoch_us(self.schedule.closing_auction_end) + 2 * (krx.VI_AUCTION_SECONDS + 60) * 1_000_000
        self.advance(max(end, self._last_ts()))

    def _last_ts(self) -> int:
        return self._ts_seen

    def _ensure_orders(self, m: int) -> None:
        need = int(self._S[k.S_NEXT_ID]) + m
        if need > len(self._O):
            grown = np.zeros((max(need, 2 * len(self._O)), k.O_COLS), dtype=np.int64)
            grown[: len(self._O)] = self._O
            self._O = grown

    def _grow_outputs(self) -> None:
        def grow(a: np.ndarray) -> np.ndarray:
            b = np.zeros((2 * len(a), a.shape[1]), dtype=a.dtype)
            b[: len(a)] = a
            return b

        self._OUT, self._F, self._V = grow(self._OUT), grow(self._F), grow(self._V)

    # ------------------------------------------------------------ state

    @property
    def phase(self) -> str:
        return _PHASE_NAMES[int(self._S[k.S_PHASE])]

    @property
    def vi_active(self) -> bool:
        return bool(self._S[k.S_VI_ACTIVE])

    @property
    def next_order_id(self) -> int:
        """The id the next order event will get (ids count events from 0)."""
        return int(self._S[k.S_NEXT_ID])

    @property
    def opening_auction_end_us(self) -> int:
        """When the opening call ends: the nominal open plus its random end (랜덤엔드)."""
        return int(self._S[k.S_T_OPEN])

    @property
    def static_reference(self) -> int:
        """정적 VI 기준가격: the base price before the open, then the latest single-price auction."""
        return int(self._S[k.S_STATIC_REF])

    @property
    def dynamic_reference(self) -> int:
        """동적 VI 기준가격: the last execution price."""
        return int(self._S[k.S_DYNAMIC_REF])

    @property
    def last_price(self) -> int:
        return int(self._S[k.S_LAST_PRICE])

    @property
    def cum_volume(self) -> int:
        return int(self._S[k.S_CUM_VOLUME])

    @property
    def open_price(self) -> int:
        return int(self._S[k.S_OPEN_PRICE])

    @property
    def close_price(self) -> int:
        return int(self._S[k.S_CLOSE_PRICE])

    def best_bid(self) -> int:
        i = int(self._S[k.S_BEST_BID])
        return int(self.grid[i]) if i >= 0 else 0

    def best_ask(self) -> int:
        i = int(self._S[k.S_BEST_ASK])
        return int(self.grid[i]) if i < len(self.grid) else 0

    def depth(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid prices, bid quantity, ask quantity) of every level: the whole book."""
        return self.grid, self._L[k.L_QTY].copy(), self._L[k.L_QTY + 1].copy()

    def order_remaining(self, order_id: int) -> int:
        """Unfilled quantity of a live order (0 once filled or cancelled)."""
        return int(self._O[order_id, k.O_QTY]) if self._O[order_id, k.O_LIVE] else 0

    def indicative(self) -> tuple[int, int]:
        """예상체결가/수량 of the book as it stands (0, 0 when nothing crosses)."""
        last = self.last_price or self.static_reference
        p, v = k.uncross_price(self._S, self._L, self.grid, last)
        return (int(self.grid[p]), int(v)) if v > 0 else (0, 0)

    def kernel_state(self) -> tuple[np.ndarray, ...]:
        """(S, O, L, grid, OUT, F, V, D): the arrays the kernels work on, for another kernel that
        drives this exchange from inside numba (the synthetic market)."""
        return self._S, self._O, self._L, self.grid, self._OUT, self._F, self._V, self._delays

    # ------------------------------------------------------------ output

    def raw_events(self) -> np.ndarray:
        """The engine's output rows (columns ``kernels.C_*``), for tests and tools."""
        return self._OUT[: self._S[k.S_N_OUT]]

    def fills(self) -> np.ndarray:
        """Per-order fills (columns ``kernels.F_*``)."""
        return self._F[: self._S[k.S_N_FILLS]]

    def vi_records(self) -> np.ndarray:
        """VI records (columns ``kernels.V_*``)."""
        return self._V[: self._S[k.S_N_VI]]

    def ticks(self, overlay: dict[str, np.ndarray] | None = None) -> pa.Table:
        """The output rows as a table in the tick schema. ``overlay`` supplies columns the engine
        does not know (program_net_buy, investor nets, news and disclosure flags), one value per row."""
        out = self.raw_events()
        n = len(out)
        ts = out[:, k.C_TS]
        # by the clock, except what the engine knows better: the opening call runs until its
        # random end, and the day is closed once the closing call has uncrossed
        session = self.schedule.session_labels(ts)
        session[out[:, k.C_PHASE] == k.PH_PREOPEN] = "opening_auction"
        session[out[:, k.C_PHASE] == k.PH_CLOSED] = "closed"
        vi_type = np.asarray(VI_TYPES, dtype=object)[out[:, k.C_VI_TYPE]]
        direction = np.where(out[:, k.C_VI_DIR] > 0, "up", "down")
        vi_reason = np.where(out[:, k.C_VI_STATUS] > 0, vi_type + "_" + direction, "")
        cols: dict[str, pa.Array] = {
            "timestamp": pa.array(ts, pa.timestamp("us")).cast(TICK_SCHEMA.field("timestamp").type),
            "stock_code": pa.array([self.instrument.stock_code] * n, pa.string()),
            "stock_name": pa.array([self.instrument.stock_name] * n, pa.string()),
            "market": pa.array([self.instrument.market] * n, pa.string()),
            "event_type": pa.array(np.asarray(EVENT_TYPES, dtype=object)[out[:, k.C_TYPE]], pa.string()),
            "price": out[:, k.C_PRICE],
            "volume": out[:, k.C_VOLUME],
            "cum_volume": out[:, k.C_CUM_VOLUME],
            "side": out[:, k.C_SIDE].astype(np.int8),
        }
        for b, name in enumerate(("bid_price", "ask_price", "bid_volume", "ask_volume")):
            for lvl in range(k.LEVELS):
                cols[f"{name}_{lvl + 1}"] = out[:, k.C_BOOK + b * k.LEVELS + lvl]
        overlay = overlay or {}
        for name in ("program_net_buy", "institution_net", "foreign_net", "individual_net"):
            cols[name] = np.asarray(overlay.get(name, np.zeros(n, dtype=np.int64)), dtype=np.int64)
        cols["vi_status"] = out[:, k.C_VI_STATUS].astype(np.int8)
        cols["vi_type"] = pa.array(vi_type, pa.string())
        cols["vi_reason"] = pa.array(vi_reason, pa.string())
        for name in ("news_flag", "disclosure_flag"):
            cols[name] = np.asarray(overlay.get(name, np.zeros(n, dtype=bool)), dtype=bool)
        cols["session"] = pa.array(session, pa.string())
        return pa.Table.from_pydict(cols, schema=TICK_SCHEMA)

    def vi_log(self) -> pa.Table:
        """The engine's own VI record in the ``raw/vi_log.parquet`` schema."""
        v = self.vi_records()
        tz = VI_LOG_SCHEMA.field("trigger_ts").type
        release = v[:, k.V_RELEASE_TS]
        auction = v[:, k.V_AUCTION_PRICE]
        return pa.Table.from_pydict(
            {
                "stock_code": [self.instrument.stock_code] * len(v),
                "trigger_ts": pa.array(v[:, k.V_TRIGGER_TS], pa.timestamp("us")).cast(tz),
                "release_ts": pa.array(release, pa.timestamp("us"), mask=release < 0).cast(tz),
                "vi_type": [VI_TYPES[t] for t in v[:, k.V_TYPE]],
                "direction": v[:, k.V_DIR].astype(np.int8),
                "ref_price": v[:, k.V_REF],
                "trigger_price": v[:, k.V_TRIGGER_PRICE],
                "auction_price": pa.array(auction, pa.int64(), mask=auction < 0),
            },
            schema=VI_LOG_SCHEMA,
        )


class OrderRejected(ValueError):
    """The exchange refused an order; the message says why."""


def result_reason(code: int) -> str:
    return _RESULT_NAMES[int(code)]
