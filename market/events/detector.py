"""Streaming VI detection: one market event in, zero or more VI events out, O(1) per event.

The same detector serves the batch command (``vicap events`` replays files through it) and the
live executor (fed from the KIS feed). It works two ways:
- from the exchange's own flags (``vi_status`` 1 during a VI auction, 2 at its release), as the
  synthetic market and KIS recordings carry them; a flag without the VI's type (KIS H0STMKO0
  without the REST record) starts the VI with a provisional type, settled by the auction's first
  indicative price or else by its uncross print;
- from the KRX rules alone, for vendor files without flags: a single-price print after the open
  ends a call auction, which in continuous hours only a VI starts; the indicative rows before it,
  or the halt in trading, give its start; the bands against the static and dynamic references
  give its type.

What real data brings, and how it is read (times from the day's ``market.krx`` schedule, so a
CSAT or new-year day moves them):
- every call auction ends at a random moment within 30 s: the day's first single-price print up
  to 30 s after the nominal open is the open, and one up to 30 s after the nominal close is the
  close, at any microsecond; neither is a VI. A later first print is an opening call extended by
  a static VI; a later closing print, a closing call extended by a VI;
- trades outside the regular session (pre-open trades at the previous close from 08:30, the
  post-close and off-hours sessions from 15:40) print at single prices but set off no VI the
  rules can tell from their calls: the rules ignore them (flags are followed wherever they are);
- a trade whose aggressor side is unknown (``SIDE_UNKNOWN``, many vendor files) is a single-price
  print only where the clock says so (the open's window, the closing call) or, in continuous
  hours, after a halt of at least a VI auction's length ending in a print at or beyond a band or
  after indicative prices: continuous trading cannot print across a band;
- an opening-call VI is static (the dynamic VI does not apply in the opening call); a type the
  data cannot decide (a print back inside both bands and no other trace) is ``unknown``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from market import krx
from market.krx.schema import (
    SIDE_AUCTION,
    SIDE_UNKNOWN,
    VI_STATUS_AUCTION,
    VI_STATUS_RELEASED,
)
from market.krx.sessions import EXTENSION_MAX_US, RANDOM_END_US

NO_PRICE = 0
AUCTION_MIN_US = krx.VI_AUCTION_SECONDS * krx.US_PER_SECOND  # a VI halts trading at least this long
STATIC_BP = krx.rate_to_bp(krx.STATIC_VI_RATE)


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """The fields of a tick row the detector reads (timestamps in µs since the epoch)."""

    ts: int
    stock_code: str
    event_type: str  # trade | book | indicative | status
    price: int
    volume: int
    side: int  # SIDE_BUY, SIDE_SELL, SIDE_AUCTION (single-price print) or SIDE_UNKNOWN
    vi_status: int = -1  # -1: the source carries no VI flags
    vi_type: str = "none"
    vi_direction: int = 0  # +1 up, -1 down where the feed publishes it (vi_reason), else 0


def reason_direction(vi_reason: str) -> int:
    """The direction a tick row's ``vi_reason`` (``static_up``, ``dynamic_down``, ...) publishes;
    0 where it names none."""
    return 1 if vi_reason.endswith("_up") else -1 if vi_reason.endswith("_down") else 0


@dataclass(frozen=True, slots=True)
class StockDay:
    """What the detector must know of a stock on a day (instruments.parquet)."""

    day: dt.date
    market: str
    kospi200: bool
    base_price: int
    kosdaq150: bool = False
    futures_underlying: bool = False

    @classmethod
    def from_instrument(cls, row: dict) -> StockDay:
        """From a row of instruments.parquet."""
        return cls(
            row["date"],
            row["market"],
            row["kospi200"],
            row["base_price"],
            row["kosdaq150"],
            row["futures_underlying"],
        )


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
    open_us: int  # the opening call's nominal end
    close_start_us: int
    close_end_us: int  # the closing call's nominal end
    after_hours_us: int  # the post-close session's start
    expiry_day: bool
    static_ref: int
    last_price: int = NO_PRICE
    last_trade_ts: int = 0
    price_before_last_ts: int = NO_PRICE  # the last print stamped before last_trade_ts
    opened: bool = False  # the open has printed, or continuous trading has started without it
    active: VIEvent | None = None
    provisional: bool = False  # the active VI's type awaits the auction's prices
    first_indicative: tuple[int, int] | None = None  # (ts, price) of the auction's first indicative row


def _nearer_edge(static_ref: int, dynamic_ref: int, dynamic_bp: int, direction: int) -> str:
    """Which band a move in ``direction`` from the dynamic reference reaches first: the would-be
    price crosses the nearer edge first, so that band fired ("both" when the edges coincide)."""
    static_edge = static_ref * (10_000 + direction * STATIC_BP)
    dynamic_edge = dynamic_ref * (10_000 + direction * dynamic_bp)
    if static_edge == dynamic_edge:
        return "both"
    return "static" if (static_edge < dynamic_edge) == (direction > 0) else "dynamic"


def infer_type(price: int, static_ref: int, dynamic_ref: int, dynamic_bp: int) -> tuple[str, int]:
    """The type and direction of a VI known to have started, from a price of its auction (the
    first indicative price, or else the uncross print) rather than the unseen would-be execution
    price. A price beyond one band names it; beyond both, the band nearer the dynamic reference
    fired first; back inside both, the type cannot be decided: ``unknown``, in the direction of
    the price from the dynamic reference."""
    s = krx.band_direction(price, static_ref, STATIC_BP)
    d = krx.band_direction(price, dynamic_ref, dynamic_bp)
    if s == 0 and d == 0:
        return "unknown", (1 if price >= dynamic_ref else -1)
    if s == 0 or d == 0 or s != d:
        return ("dynamic" if d else "static"), (d or s)
    return _nearer_edge(static_ref, dynamic_ref, dynamic_bp, d), d


def _estimate(lo: int, hi: int, last_trade_ts: int) -> int:
    """A trigger time known to lie in [lo, hi]: the last print's when it falls there (the order
    that set off the VI filled its in-band part then), else the middle (within half the span)."""
    return last_trade_ts if lo <= last_trade_ts <= hi else (lo + hi) // 2


def _extension_trigger(call_end_us: int, print_ts: int, last_trade_ts: int) -> int:
    """When a VI that extended a call auction was set off: at the call's random end (its nominal
    end plus up to 30 s), 2 minutes plus up to 30 s before the print that released it."""
    lo = max(call_end_us, print_ts - EXTENSION_MAX_US)
    hi = min(call_end_us + RANDOM_END_US, print_ts - AUCTION_MIN_US)
    return _estimate(lo, hi, last_trade_ts)


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
                after_hours_us=krx.epoch_us(sched.post_close_start),
                expiry_day=krx.is_derivatives_expiry_day(day),
                static_ref=info.base_price,
            )
            self._states[ev.stock_code] = st
        return st

    def _dynamic_bp(self, st: _State, ts: int) -> int:
        info = st.info
        session = "closing_auction" if ts >= st.close_start_us else "continuous"
        rate = krx.dynamic_vi_rate(
            info.kospi200,
            session,
            st.expiry_day,
            kosdaq150=info.kosdaq150,
            futures_underlying=info.futures_underlying,
        )
        return krx.rate_to_bp(rate)

    def _dynamic_ref(self, st: _State, trigger_ts: int) -> int:
        # prints stamped at the trigger instant are the in-band fills of the order that set it off
        ref = st.price_before_last_ts if st.last_trade_ts == trigger_ts else st.last_price
        return ref or st.info.base_price

    def _type(self, st: _State, price: int, trigger_ts: int, dynamic_ref: int) -> tuple[str, int]:
        if not st.opened and trigger_ts <= st.open_us + RANDOM_END_US:
            # set off in the opening call, where the dynamic VI does not apply
            return "static", (1 if price >= st.static_ref else -1)
        vtype, direction = infer_type(price, st.static_ref, dynamic_ref, self._dynamic_bp(st, trigger_ts))
        if vtype == "unknown" and st.last_price not in (NO_PRICE, price):
            # inside both bands of the reference we estimated, so the estimate is off (whole-second
            # stamps hide which prints of the trigger second came first): the order that set the VI
            # off filled its in-band part on the way, so the auction's price lies past the last print
            direction = 1 if price > st.last_price else -1
        return vtype, direction

    def on_event(self, ev: MarketEvent) -> list[VIEvent]:
        """Returns the VIs that this event starts or releases (a started VI is returned again,
        completed, when it is released)."""
        st = self._state(ev)
        flagged = self._use_flags and ev.vi_status >= 0
        # outside the regular session (시간외): no VI the rules can tell, and no trade of the day's
        # references (a pre-open trade at the previous close is not the open)
        outside = ev.ts < st.open_us or ev.ts >= st.after_hours_us
        if outside and not flagged:
            return []
        single_price = ev.event_type == "trade" and self._single_price(st, ev)
        out = self._on_flags(st, ev, single_price) if flagged else self._on_rules(st, ev, single_price)
        if ev.event_type == "trade" and not outside:
            if single_price:
                st.static_ref = ev.price  # every single-price auction resets the static reference
            st.opened = True
            if ev.ts > st.last_trade_ts:
                st.price_before_last_ts = st.last_price
            st.last_price = ev.price
            st.last_trade_ts = ev.ts
        return out

    def _single_price(self, st: _State, ev: MarketEvent) -> bool:
        """Whether a trade is a call auction's single-price print (단일가 체결)."""
        if ev.side == SIDE_AUCTION:
            return True
        opening = not st.opened and ev.ts <= st.open_us + RANDOM_END_US
        halted = ev.ts - st.last_trade_ts >= AUCTION_MIN_US
        if ev.side != SIDE_UNKNOWN:
            # vendors that sign every print (Kiwoom's FID 15, LS cgubun) sign a call's uncross too:
            # the day's first print in the open's window, and a print across a band after a halt
            # (continuous trading cannot print there), are single-price prints whatever the sign
            return not self._use_flags and (opening or (st.opened and halted and self._beyond_band(st, ev)))
        # no aggressor side in the data: the clock and the halt before the print tell
        if ev.ts >= st.close_start_us or opening:
            return True  # the closing call, or the open
        if ev.vi_status == VI_STATUS_RELEASED and st.active is not None:
            return True  # flagged as the release of a VI
        if not st.opened:  # an opening call extended by a static VI prints 10% from the base price
            banded = krx.band_direction(ev.price, st.static_ref, STATIC_BP) != 0
            return halted and banded and ev.ts <= st.open_us + RANDOM_END_US + EXTENSION_MAX_US
        return halted and (self._beyond_band(st, ev) or st.first_indicative is not None)

    def _beyond_band(self, st: _State, ev: MarketEvent) -> bool:
        return (
            krx.band_direction(ev.price, st.static_ref, STATIC_BP) != 0
            or krx.band_direction(ev.price, st.last_price, self._dynamic_bp(st, ev.ts)) != 0
        )

    # -------------------------------------------------------------- from the exchange's flags

    def _on_flags(self, st: _State, ev: MarketEvent, single_price: bool) -> list[VIEvent]:
        if ev.vi_status == VI_STATUS_AUCTION and st.active is None:
            # the halt's own price, or else the auction's first indicative price: it stands in for the
            # unseen would-be execution price (the last print can lie on the far side of a whipsaw)
            priced = ev.event_type in ("status", "indicative") and ev.price > 0
            trigger = ev.price if priced else (st.last_price or st.static_ref)
            dyn = self._dynamic_ref(st, ev.ts)
            if ev.vi_type in ("static", "dynamic", "both"):
                vtype = ev.vi_type
                # the feed's own direction where it has one: a whole-second feed cannot tell which
                # prints of the trigger second came before the order that set the VI off
                ref = st.static_ref if vtype != "dynamic" else dyn
                direction = ev.vi_direction or (1 if trigger >= ref else -1)
            else:  # a feed that flags the halt but not its type (KIS H0STMKO0 without the REST record)
                vtype, direction = self._type(st, trigger, ev.ts, dyn)
                st.provisional = True
            st.active = VIEvent(ev.stock_code, ev.ts, vtype, direction, st.static_ref, dyn, trigger)
            return [st.active]
        vi = st.active
        if vi is None:
            return []
        if (
            ev.vi_status == VI_STATUS_AUCTION
            and st.provisional
            and ev.event_type == "indicative"
            and ev.price
        ):
            # the auction's first indicative price stands in for the unseen would-be execution price
            vi.trigger_price = ev.price
            vi.vi_type, vi.direction = self._type(st, ev.price, vi.trigger_ts, vi.dynamic_ref)
            st.provisional = False
            return []
        if ev.vi_status == VI_STATUS_RELEASED:
            vi.release_ts = ev.ts
            if single_price:
                vi.auction_price, vi.auction_volume = ev.price, ev.volume
                if st.provisional:  # no indicative price came: the uncross print is all there is
                    vi.vi_type, vi.direction = self._type(st, ev.price, vi.trigger_ts, vi.dynamic_ref)
            st.active, st.provisional = None, False
            return [vi]
        return []

    # -------------------------------------------------------------- from the rules alone

    def _on_rules(self, st: _State, ev: MarketEvent, single_price: bool) -> list[VIEvent]:
        if ev.event_type == "indicative":
            # an indicative price in continuous hours means a VI auction (the calls have their own)
            if st.opened and ev.ts < st.close_start_us and st.first_indicative is None:
                st.first_indicative = (ev.ts, ev.price)
            return []
        if ev.event_type != "trade":
            return []
        if not single_price:
            st.first_indicative = None  # continuous trading again: no auction was running
            return []
        vi = self._auction_ended(st, ev)
        st.first_indicative = None
        return [vi] if vi is not None else []

    def _auction_ended(self, st: _State, ev: MarketEvent) -> VIEvent | None:
        """The VI that a single-price print releases, or None for the open and the close."""
        ts = ev.ts
        if not st.opened and ts <= st.open_us + RANDOM_END_US:
            return None  # the open, at its random end
        if st.close_start_us <= ts <= st.close_end_us + RANDOM_END_US and st.first_indicative is None:
            return None  # the close, at its random end (a VI seen running merged into it)
        if st.first_indicative is not None:
            trigger_ts, observed = st.first_indicative
        elif not st.opened and ts <= st.open_us + RANDOM_END_US + EXTENSION_MAX_US:
            # an opening call extended by a static VI
            trigger_ts, observed = _extension_trigger(st.open_us, ts, st.last_trade_ts), ev.price
        elif ts > st.close_end_us + RANDOM_END_US:  # a closing call extended by a VI
            trigger_ts, observed = _extension_trigger(st.close_end_us, ts, st.last_trade_ts), ev.price
        else:  # a VI in continuous hours: it halted trading 2 minutes plus up to 30 s before the print
            trigger_ts = _estimate(ts - EXTENSION_MAX_US, ts - AUCTION_MIN_US, st.last_trade_ts)
            observed = ev.price
        dyn = self._dynamic_ref(st, trigger_ts)
        vtype, direction = self._type(st, observed, trigger_ts, dyn)
        return VIEvent(
            ev.stock_code,
            trigger_ts,
            vtype,
            direction,
            st.static_ref,
            dyn,
            observed,
            release_ts=ts,
            auction_price=ev.price,
            auction_volume=ev.volume,
        )


def completed(events: Iterator[VIEvent] | list[VIEvent]) -> list[VIEvent]:
    """Keep each VI once, at its release (or as started, if the data ended inside it)."""
    seen: dict[tuple[str, int], VIEvent] = {}
    for vi in events:
        seen[(vi.stock_code, vi.trigger_ts)] = vi
    return list(seen.values())
