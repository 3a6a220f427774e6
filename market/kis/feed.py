"""One stock's KIS real-time feed as tick rows: the state carried from record to record.

The recording ingest runs every record of a stock through a :class:`StockFeed` in arrival order,
and the live executor will do the same with each record as it arrives: one object, one set of
rules. A record in, (exchange time, vi_status, side, VI index, starts a VI) out, O(1).

What the feed tells, by the documented codes (krx-market-rules.md, market/kis/formats.py):
- The clock is the exchange time of the record (HHMMSS), never earlier than the stock's previous
  record; H0STMKO0 carries no time and takes its receive second.
- A VI call auction runs from H0STMKO0 VI_CLS_CODE 'Y', or, where there is no H0STMKO0 (paper
  accounts are not offered it), from a book or trade record with HOUR_CLS_CODE 'C' (9시 이후의
  예상가, VI발동) once the day's opening print is in. It ends with its uncross print, or, where
  H0STMKO0 opened it, with VI_CLS_CODE 'N'.
- A print is a single-price (auction) print, side 0, when CCLD_DVSN says 3, when it ends a call
  the feed announced (HOUR_CLS_CODE A/B/C/D on the stock's latest book), when it ends a VI
  auction, or when it moves VI_STND_PRC (정적VI발동기준가, which every single-price auction resets
  to its price) to its own price, whatever aggressor code it carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from market.kis import formats as kis
from market.krx.schema import VI_STATUS_AUCTION, VI_STATUS_RELEASED

NORMAL, AUCTION, RELEASED = 0, 1, 2  # released: the uncross printed, H0STMKO0 'N' still to come
NO_VI = -1
US_PER_SECOND = 1_000_000


@dataclass(slots=True)
class StockFeed:
    """The state of one stock's feed; ``vi_by_second`` maps a VI's trigger second (exchange time,
    microseconds // 1e6) to its row in the VI-status REST record, for its type and prices."""

    vi_by_second: dict[int, int] = field(default_factory=dict)
    day: int = -1
    clock_us: int = 0
    state: int = NORMAL
    vi: int = NO_VI
    by_market_op: bool = False  # the running VI was opened by H0STMKO0: its 'N' ends it
    call: bool = False  # the latest book said a call auction collects orders
    opened: bool = False  # the day's first print is in
    static_ref: int = 0  # the latest VI_STND_PRC (0: not sent)
    clock_held: int = 0  # records whose exchange time went back (stamped with the later clock)

    def reset(self, day: int) -> None:
        """A new trading day (Seoul day number): nothing carries over."""
        self.day, self.clock_us, self.state, self.vi = day, 0, NORMAL, NO_VI
        self.by_market_op = self.call = self.opened = False
        self.static_ref = 0

    def _tick(self, day: int, stamp_us: int) -> None:
        if day != self.day:
            self.reset(day)
        if stamp_us < self.clock_us:
            self.clock_held += 1
        self.clock_us = max(self.clock_us, stamp_us)

    def _start_vi(self) -> None:
        second = self.clock_us // US_PER_SECOND
        self.state = AUCTION
        self.vi = self.vi_by_second.get(second, self.vi_by_second.get(second - 1, NO_VI))

    def _out(self, status: int, side: int, started: bool) -> tuple[int, int, int, int, bool]:
        vi = self.vi
        if self.state == NORMAL and status == 0:
            self.vi = NO_VI
        return self.clock_us, status, side, vi if status else NO_VI, started

    def on_trade(
        self, day: int, stamp_us: int, side: int, hour: str, price: int = 0, static_ref: int = 0
    ) -> tuple[int, int, int, int, bool]:
        """``static_ref``: the record's VI_STND_PRC (0 where it has none)."""
        self._tick(day, stamp_us)
        reset = 0 < self.static_ref != static_ref == price
        auction_print = (
            side == 0 or self.call or hour != kis.HOUR_CONTINUOUS or self.state == AUCTION or reset
        )
        self.static_ref = static_ref or self.static_ref
        status = 0
        if self.state == AUCTION:
            status = VI_STATUS_RELEASED
            self.state = RELEASED if self.by_market_op else NORMAL
        self.call, self.opened = False, True
        return self._out(status, 0 if auction_print else side, False)

    def on_book(self, day: int, stamp_us: int, hour: str) -> tuple[int, int, int, int, bool]:
        self._tick(day, stamp_us)
        self.call = hour != kis.HOUR_CONTINUOUS
        started = hour == kis.HOUR_VI and self.opened and self.state == NORMAL
        if started:
            self._start_vi()
            self.by_market_op = False
        return self._out(VI_STATUS_AUCTION if self.state == AUCTION else 0, 0, started)

    def on_market_op(self, day: int, stamp_us: int, vi_on: bool) -> tuple[int, int, int, int, bool]:
        self._tick(day, stamp_us)
        started = vi_on and self.state != AUCTION
        status = 0
        if vi_on:
            if started:
                self._start_vi()
            self.by_market_op, status = True, VI_STATUS_AUCTION
        elif self.state in (AUCTION, RELEASED):
            self.state, status = NORMAL, VI_STATUS_RELEASED
        return self._out(status, 0, started)

    def on_program(self, day: int, stamp_us: int) -> tuple[int, int, int, int, bool]:
        """H0STPGM0 moves the clock only; its net buy is carried by the caller."""
        self._tick(day, stamp_us)
        return self.clock_us, 0, 0, NO_VI, False
