"""Streaming VI detection: one market event in, zero or more VI events out, O(1) per event.

The same detector serves the batch command (``vicap events`` replays files through it) and the
live executor (fed from the KIS feed). It works two ways:
- from the exchange's own flags (``vi_status`` 1 during a VI auction, 2 at its release), as the
  synthetic market and KIS recordings carry them; a flag without the VI's type (KIS H0STMKO0
  without the REST record) starts the VI with a provisional type, settled by the auction's first
  indicative price;
- from the KRX rules alone, for vendor files without flags: a single-price print in continuous
  hours (not the open) ends a call auction, which in continuous hours only a VI starts; the
  indicative rows before it, or the halt in trading, give its start; the bands against the
  static and dynamic references give its type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from market import krx

NO_PRICE = 0


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """The fields of a tick row the detector reads (timestamps in µs since the epoch)."""

    ts: int
    stock_code: str
    event_type: str  # trade | book | indicative | status
    price: int
    volume: int
    side: int  # 0 = single-price (auction) print
    vi_status: int = -1  # -1: the source carries no VI flags
    vi_type: str = "none"


@dataclass(frozen=True, slots=True)
class StockDay:
    """What the detector must know of a stock on a day (instruments.parquet)."""

    day: dt.date
    market: str
    kospi200: bool
    base_price: int


@dataclass(slots=True)
class VIEvent:
    stock_code: str
    trigger_ts: int
    vi_type: str
    direction: int
    static_ref: int
    dynamic_ref: int
    trigger_price: int
    release_ts: int | None = None
    auction_price: int | None = None
    auction_volume: int = 0

    @property
    def released(self) -> bool:
        return self.release_ts is not None


@dataclass(slots=True)
class _State:
    info: StockDay
    open_us: int
    close_start_us: int
    close_end_us: int
    static_ref: int
    last_price: int = NO_PRICE
    last_trade_ts: int = 0
    price_before_last_ts: int = NO_PRICE  # the last print stamped before last_trade_ts
    opened: bool = False
    active: VIEvent | None = None
    provisional: bool = False  # the active VI's type awaits its first indicative price
    first_indicative: tuple[int, int] | None = None  # (ts, price) of the auction's first indicative row
    emitted: list[VIEvent] = field(default_factory=list)


def classify(price: int, static_ref: int, dynamic_ref: int, dynamic_bp: int) -> tuple[str, int]:
    """The VI type and direction a would-be execution at ``price`` sets off (("none", 0) if none)."""
    s = krx.band_direction(price, static_ref, krx.rate_to_bp(krx.STATIC_VI_RATE))
    d = krx.band_direction(price, dynamic_ref, dynamic_bp)
    vtype = {(True, True): "both", (True, False): "static", (False, True): "dynamic"}.get(
        (s != 0, d != 0), "none"
    )
    return vtype, (d or s)


def infer_type(price: int, static_ref: int, dynamic_ref: int, dynamic_bp: int) -> tuple[str, int]:
    """:func:`classify` for a VI known to have started: a price back inside both bands (the
    move that set it off is gone from the data) counts as dynamic, in its direction."""
    vtype, direction = classify(price, static_ref, dynamic_ref, dynamic_bp)
    if vtype == "none":
        return "dynamic", (1 if price >= dynamic_ref else -1)
    return vtype, direction


class VIDetector:
    """Feed events of each stock in time order (stocks may interleave) with :meth:`on_event`."""

    def __init__(self, stock_days: dict[tuple[str, dt.date], StockDay], use_flags: bool = True) -> None:
        self._stock_days = stock_days
        self._use_flags = use_flags
        self._states: dict[str, _State] = {}

    def _state(self, ev: MarketEvent) -> _State:
        st = self._states.get(ev.stock_code)
        day = krx.seoul_date(ev.ts)
        if st is None or st.info.day != day:
            info = self._stock_days.get((ev.stock_code, day))
            if info is None:
                raise KeyError(f"no instrument record for stock {ev.stock_code} on {day}")
            sched = krx.session_schedule(day)
            st = _State(
                info=info,
                open_us=krx.epoch_us(sched.continuous_start),
                close_start_us=krx.epoch_us(sched.closing_auction_start),
                close_end_us=krx.epoch_us(sched.closing_auction_end),
                static_ref=info.base_price,
            )
            self._states[ev.stock_code] = st
        return st

    def _dynamic_bp(self, st: _State, ts: int) -> int:
        session = "closing_auction" if ts >= st.close_start_us else "continuous"
        expiry = krx.is_derivatives_expiry_day(st.info.day) if session == "closing_auction" else False
        return krx.rate_to_bp(krx.dynamic_vi_rate(st.info.kospi200, session, expiry))

    def on_event(self, ev: MarketEvent) -> list[VIEvent]:
        """Returns the VIs that this event starts or releases (a started VI is returned again,
        completed, when it is released)."""
        st = self._state(ev)
        flagged = self._use_flags and ev.vi_status >= 0
        out = self._on_flags(st, ev) if flagged else self._on_rules(st, ev)
        if ev.event_type == "trade":
            if ev.side == 0:
                st.static_ref = ev.price  # every single-price auction resets the static reference
                st.opened = True
            if ev.ts > st.last_trade_ts:
                st.price_before_last_ts = st.last_price
            st.last_price = ev.price
            st.last_trade_ts = ev.ts
        return out

    # -------------------------------------------------------------- from the exchange's flags

    def _on_flags(self, st: _State, ev: MarketEvent) -> list[VIEvent]:
        if ev.vi_status == 1 and st.active is None:
            trigger = (
                ev.price if ev.event_type == "status" and ev.price > 0 else (st.last_price or st.static_ref)
            )
            # prints stamped at the trigger instant are the in-band fills of the order that set it off
            dyn = st.price_before_last_ts if st.last_trade_ts == ev.ts else st.last_price
            dyn = dyn or st.info.base_price
            if ev.vi_type in ("static", "dynamic", "both"):
                vtype = ev.vi_type
                direction = 1 if trigger >= (st.static_ref if vtype != "dynamic" else dyn) else -1
            else:  # a feed that flags the halt but not its type (KIS H0STMKO0 without the REST record)
                vtype, direction = infer_type(trigger, st.static_ref, dyn, self._dynamic_bp(st, ev.ts))
                st.provisional = True
            st.active = VIEvent(ev.stock_code, ev.ts, vtype, direction, st.static_ref, dyn, trigger)
            return [st.active]
        if ev.vi_status == 1 and st.provisional and ev.event_type == "indicative" and ev.price > 0:
            # the auction's first indicative price stands in for the unseen would-be execution price
            vi = st.active
            vi.trigger_price = ev.price
            vi.vi_type, vi.direction = infer_type(
                ev.price, vi.static_ref, vi.dynamic_ref, self._dynamic_bp(st, vi.trigger_ts)
            )
            st.provisional = False
            return []
        if ev.vi_status == 2 and st.active is not None:
            vi = st.active
            vi.release_ts = ev.ts
            if ev.event_type == "trade" and ev.side == 0:
                vi.auction_price, vi.auction_volume = ev.price, ev.volume
            st.active, st.provisional = None, False
            return [vi]
        return []

    # -------------------------------------------------------------- from the rules alone

    def _on_rules(self, st: _State, ev: MarketEvent) -> list[VIEvent]:
        in_regular_hours = st.open_us < ev.ts
        # an indicative price in continuous hours means a VI auction (the closing call has its own)
        in_continuous_hours = in_regular_hours and ev.ts < st.close_start_us
        if (
            ev.event_type == "indicative"
            and in_continuous_hours
            and st.first_indicative is None
            and st.opened
        ):
            st.first_indicative = (ev.ts, ev.price)
            return []
        if not (ev.event_type == "trade" and ev.side == 0 and in_regular_hours):
            if ev.event_type == "trade" and ev.side != 0:
                st.first_indicative = None  # continuous trading again: no auction was running
            return []
        # a single-price print after the open: the end of a VI auction, unless it is the regular
        # close (which only counts when a VI merged into it or extended it)
        at_close = ev.ts >= st.close_end_us
        extended_close = ev.ts > st.close_end_us + krx.RANDOM_END_MAX_SECONDS * 1_000_000
        if at_close and not extended_close and st.first_indicative is None:
            return []
        if not st.opened:  # an opening call extended by a static VI
            trigger_ts, trigger_price = st.open_us, ev.price
        elif extended_close:
            trigger_ts, trigger_price = st.close_end_us, ev.price
        elif st.first_indicative is not None:
            trigger_ts, trigger_price = st.first_indicative
        else:
            trigger_ts, trigger_price = st.last_trade_ts, ev.price
        dyn = st.last_price or st.info.base_price
        vtype, direction = infer_type(trigger_price, st.static_ref, dyn, self._dynamic_bp(st, trigger_ts))
        vi = VIEvent(
            ev.stock_code,
            trigger_ts,
            vtype,
            direction,
            st.static_ref,
            dyn,
            trigger_price,
            release_ts=ev.ts,
            auction_price=ev.price,
            auction_volume=ev.volume,
        )
        st.first_indicative = None
        return [vi]


def completed(events: Iterator[VIEvent] | list[VIEvent]) -> list[VIEvent]:
    """Keep each VI once, at its release (or as started, if the data ended inside it)."""
    seen: dict[tuple[str, int], VIEvent] = {}
    for vi in events:
        seen[(vi.stock_code, vi.trigger_ts)] = vi
    return list(seen.values())
