"""VI detection on the shapes real data has and vicap's own engine never wrote: opens and closes
at their random ends (any microsecond within 30 s), after-hours prints, trades without an
aggressor side, a VI set off again inside the previous one's after-window, opening-call VIs, and
halts whose type nothing in the data decides. Each case states the exchange's truth; the
detector must find exactly it, in every mode the data allows: zero false VIs, exact types."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pytest

from market import krx
from market.events.detector import StockDay, VIDetector, completed
from market.events.table import replay
from market.krx.schema import (
    SIDE_AUCTION,
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    TICK_SCHEMA,
    VI_STATUS_AUCTION,
    VI_STATUS_RELEASED,
)

DAY = dt.date(2024, 3, 5)  # a Tuesday, no derivatives expiry
CSAT = dt.date(2024, 11, 14)  # 수능: every session one hour later
CODE, BASE = "123450", 10_000  # a KOSDAQ name: dynamic band 6%


def at(clock: str, day: dt.date = DAY) -> int:
    return krx.at_seoul(day, dt.time.fromisoformat(clock))


@dataclass(frozen=True)
class Row:
    ts: int
    event_type: str
    price: int
    side: int = SIDE_UNKNOWN
    volume: int = 100
    vi_status: int = 0
    vi_type: str = "none"


def trade(clock: str, price: int, side: int, volume: int = 100, day: dt.date = DAY, **flags) -> Row:
    return Row(at(clock, day), "trade", price, side, volume, **flags)


def indicative(clock: str, price: int, day: dt.date = DAY, **flags) -> Row:
    return Row(at(clock, day), "indicative", price, SIDE_AUCTION, 500, **flags)


def status(clock: str, price: int, vi_status: int, vi_type: str = "none", day: dt.date = DAY) -> Row:
    return Row(at(clock, day), "status", price, SIDE_AUCTION, 0, vi_status, vi_type)


def drift(start: str, end: str, first: int, last: int, every_s: int = 7, day: dt.date = DAY) -> list[Row]:
    """Continuous trades from ``first`` to ``last`` KRW (on the 10-won grid), buy and sell aggressors
    in turn: the quiet hours between the events of a case."""
    t0, t1 = at(start, day), at(end, day)
    n = max(1, (t1 - t0) // (every_s * 1_000_000))
    rows = []
    for i in range(n + 1):
        price = round((first + (last - first) * i / n) / 10) * 10
        ts = t0 + i * (t1 - t0) // n
        rows.append(Row(ts, "trade", price, SIDE_BUY if i % 2 == 0 else SIDE_SELL))
    return rows


def table(rows: list[Row], code: str = CODE) -> pa.Table:
    """Rows in the tick schema (an empty book; the session by the clock), in the given order."""
    n = len(rows)
    ts = [r.ts for r in rows]
    volume_so_far, cum = 0, []
    for r in rows:
        volume_so_far += r.volume if r.event_type == "trade" else 0
        cum.append(volume_so_far)
    cols: dict[str, object] = {
        "timestamp": pa.array(ts, pa.timestamp("us")).cast(TICK_SCHEMA.field("timestamp").type),
        "stock_code": [code] * n,
        "stock_name": ["비캡전자"] * n,
        "market": ["KOSDAQ"] * n,
        "event_type": [r.event_type for r in rows],
        "price": [r.price for r in rows],
        "volume": [r.volume for r in rows],
        "cum_volume": cum,
        "side": [r.side for r in rows],
        "vi_status": [r.vi_status for r in rows],
        "vi_type": [r.vi_type for r in rows],
        "vi_reason": [""] * n,
        "session": list(krx.session_labels_by_day(ts)),
    }
    for f in TICK_SCHEMA:
        if f.name not in cols:
            cols[f.name] = pa.nulls(n, f.type).fill_null(False if f.type == pa.bool_() else 0)
    return pa.Table.from_pydict(cols, schema=TICK_SCHEMA)


def detect(rows: list[Row], use_flags: bool, day: dt.date = DAY, **membership) -> list[tuple]:
    info = {(CODE, day): StockDay(day, "KOSDAQ", False, BASE, **membership)}
    found = completed(replay(table(rows), VIDetector(info, use_flags=use_flags), use_flags))
    return [
        (v.trigger_ts, v.vi_type, v.direction, v.release_ts, v.auction_price)
        for v in sorted(found, key=lambda v: v.trigger_ts)
    ]


def without_sides(rows: list[Row]) -> list[Row]:
    """The same day as a vendor file without the aggressor side."""
    return [
        Row(r.ts, r.event_type, r.price, SIDE_UNKNOWN, r.volume) if r.event_type == "trade" else r
        for r in rows
    ]


def without(rows: list[Row], *kinds: str) -> list[Row]:
    return [r for r in rows if r.event_type not in kinds]


def unflagged(rows: list[Row]) -> list[Row]:
    return [Row(r.ts, r.event_type, r.price, r.side, r.volume) for r in rows if r.event_type != "status"]


# ------------------------------------------------------------------ an ordinary day: no VI at all


def ordinary_day() -> list[Row]:
    close = 10_080
    return [
        trade("08:31:00.250000", BASE, SIDE_AUCTION, 700),  # pre-open, at the previous close (장전 시간외)
        indicative("08:40:00", 10_050),
        indicative("08:59:59.500000", 10_050),
        indicative("09:00:05.500000", 10_060),  # the opening call still runs after 09:00
        trade("09:00:17.123456", 10_060, SIDE_AUCTION, 5_000),  # the open, at its random end
        *drift("09:00:18", "15:19:50", 10_070, 10_090),
        indicative("15:20:00", 10_080),
        indicative("15:30:10", close),
        trade("15:30:21.654321", close, SIDE_AUCTION, 8_000),  # a late close
        trade("15:40:00.100000", close, SIDE_AUCTION, 300),  # post-close at the closing price
        trade("15:55:12", close, SIDE_AUCTION, 200),
        trade("16:10:00.300000", 10_300, SIDE_AUCTION, 900),  # off-hours single-price calls
        trade("16:20:00.200000", 10_500, SIDE_AUCTION, 700),  # (up to 10% from the close)
        trade("16:30:00.100000", 10_650, SIDE_AUCTION, 500),
        trade("17:00:00", 10_900, SIDE_AUCTION, 400),
        trade("17:50:00.900000", 10_950, SIDE_AUCTION, 100),
    ]


@pytest.mark.parametrize("sides", ["given", "unknown"])
@pytest.mark.parametrize("use_flags", [False, True], ids=["rules", "flags"])
def test_random_end_open_late_close_and_after_hours_prints_are_no_vi(sides, use_flags):
    rows = ordinary_day() if sides == "given" else without_sides(ordinary_day())
    assert detect(rows, use_flags) == []
    assert detect(without(rows, "indicative"), use_flags) == []


def test_the_open_at_any_microsecond_of_its_window_is_no_vi():
    for clock in ("09:00:00", "09:00:00.000001", "09:00:13.999999", "09:00:30"):
        rows = [trade(clock, 10_100, SIDE_AUCTION, 900), *drift("09:00:31", "10:00:00", 10_100, 10_300)]
        assert detect(rows, use_flags=False) == [], clock
        assert detect(without_sides(rows), use_flags=False) == [], clock


def test_on_a_csat_day_the_open_comes_an_hour_later():
    rows = [
        indicative("09:45:00", 10_050, CSAT),
        indicative("10:00:04", 10_050, CSAT),
        trade("10:00:12.500000", 10_050, SIDE_AUCTION, 900, CSAT),
        *drift("10:00:13", "16:19:00", 10_060, 10_100, day=CSAT),
        trade("16:30:19", 10_100, SIDE_AUCTION, 900, CSAT),  # the close, at its random end
        trade("17:10:00.200000", 10_500, SIDE_AUCTION, 100, CSAT),  # off hours from 17:00
    ]
    assert detect(rows, use_flags=False, day=CSAT) == []
    assert detect(without_sides(rows), use_flags=False, day=CSAT) == []


# ------------------------------------------ two VIs, the second inside the first's after-window


def retrigger_day() -> list[Row]:
    """A static VI up at 10:00:00.25 (the in-band fill at 10,950, the static edge 11,000), released
    at 11,050; a dynamic VI up 7 s after the release (from 11,100 the dynamic edge is 11,766,
    the static one 12,155), released at 11,800."""
    return [
        trade("09:00:17.123456", BASE, SIDE_AUCTION, 5_000),
        *drift("09:00:18", "09:59:59", 10_000, 10_900),
        trade("10:00:00.250000", 10_950, SIDE_BUY),  # the in-band part of the order that sets it off
        status("10:00:00.250000", 11_000, VI_STATUS_AUCTION, "static"),
        indicative("10:00:00.250000", 11_050, vi_status=VI_STATUS_AUCTION, vi_type="static"),
        indicative("10:01:00", 11_050, vi_status=VI_STATUS_AUCTION, vi_type="static"),
        trade("10:02:13.456789", 11_050, SIDE_AUCTION, 3_000, vi_status=VI_STATUS_RELEASED, vi_type="static"),
        status("10:02:13.456789", 11_050, VI_STATUS_RELEASED, "static"),
        trade("10:02:14", 11_100, SIDE_BUY),
        trade("10:02:20.500000", 11_700, SIDE_BUY),
        status("10:02:20.500000", 11_800, VI_STATUS_AUCTION, "dynamic"),
        indicative("10:02:20.500000", 11_800, vi_status=VI_STATUS_AUCTION, vi_type="dynamic"),
        trade(
            "10:04:41.200000", 11_800, SIDE_AUCTION, 2_000, vi_status=VI_STATUS_RELEASED, vi_type="dynamic"
        ),
        status("10:04:41.200000", 11_800, VI_STATUS_RELEASED, "dynamic"),
        *drift("10:04:42", "15:19:00", 11_790, 11_500),
        trade("15:30:05", 11_500, SIDE_AUCTION, 4_000),
    ]


STATIC_VI = (at("10:00:00.250000"), "static", 1, at("10:02:13.456789"), 11_050)
DYNAMIC_VI = (at("10:02:20.500000"), "dynamic", 1, at("10:04:41.200000"), 11_800)


def test_a_vi_set_off_again_inside_the_after_window_is_found_with_its_type():
    rows = retrigger_day()
    assert detect(rows, use_flags=True) == [STATIC_VI, DYNAMIC_VI]
    rules = unflagged(rows)
    assert detect(rules, use_flags=False) == [STATIC_VI, DYNAMIC_VI]
    assert detect(without(rules, "indicative"), use_flags=False) == [STATIC_VI, DYNAMIC_VI]
    assert detect(without_sides(rules), use_flags=False) == [STATIC_VI, DYNAMIC_VI]


def test_without_sides_or_indicative_prices_only_a_print_across_a_band_shows_a_halt():
    # the second release prints 0.85% from the in-band fill before the halt: with neither sides nor
    # indicative prices nothing tells it from a continuous trade after a quiet spell, so it is not
    # reported; nothing false is
    rows = without_sides(without(unflagged(retrigger_day()), "indicative"))
    assert detect(rows, use_flags=False) == [STATIC_VI]


def test_a_quiet_spell_in_a_thin_stock_is_no_vi():
    rows = [
        trade("09:00:02", BASE, SIDE_AUCTION, 500),
        trade("09:10:00", 10_550, SIDE_BUY),  # a sweep of 5.5% by one order
        trade("09:14:00", 10_600, SIDE_BUY),  # minutes later: 6% from 10,000 but not from 10,550
        trade("09:30:00", 10_500, SIDE_SELL),
    ]
    assert detect(without_sides(rows), use_flags=False) == []


# ------------------------------------------ the opening call, and types nothing decides


def opening_vi_day(*, flag_type: str) -> list[Row]:
    """The opening call would uncross 12% above the base price at its random end (09:00:12.345678):
    a static VI extends it by 2 minutes; the feed flags the halt without its type (KIS H0STMKO0
    without the REST record)."""
    return [
        indicative("08:50:00", 11_200),
        indicative("09:00:12.345678", 11_200),
        status("09:00:12.345678", 0, VI_STATUS_AUCTION, flag_type),
        indicative("09:01:00", 11_150, vi_status=VI_STATUS_AUCTION),
        trade("09:02:31.500000", 11_150, SIDE_AUCTION, 4_000, vi_status=VI_STATUS_RELEASED),
        status("09:02:31.500000", 11_150, VI_STATUS_RELEASED),
        *drift("09:02:32", "11:00:00", 11_160, 11_300),
    ]


def test_an_opening_call_vi_is_static():
    flagged = detect(opening_vi_day(flag_type="none"), use_flags=True)
    assert flagged == [(at("09:00:12.345678"), "static", 1, at("09:02:31.500000"), 11_150)]
    for rows in (
        unflagged(opening_vi_day(flag_type="none")),
        without_sides(unflagged(opening_vi_day(flag_type="none"))),
    ):
        [(trigger, *rest)] = detect(rows, use_flags=False)
        assert rest == ["static", 1, at("09:02:31.500000"), 11_150]
        assert at("09:00:00") <= trigger <= at("09:00:30")  # the open's random end, unseen


def test_trades_outside_the_regular_session_leave_its_state_alone():
    """A pre-open trade at the previous close (장전 시간외, 08:30-08:40) is not the open: with flags,
    too, the opening call's VI that follows is still static."""
    rows = [trade("08:31:00.250000", BASE, SIDE_AUCTION, 700), *opening_vi_day(flag_type="none")]
    assert detect(rows, use_flags=True) == [
        (at("09:00:12.345678"), "static", 1, at("09:02:31.500000"), 11_150)
    ]


def halt_without_a_type() -> list[Row]:
    """A halt flagged without its type, no indicative price, and an uncross back inside both bands."""
    return [
        trade("09:00:03", BASE, SIDE_AUCTION, 900),
        *drift("09:00:04", "10:29:59", 10_000, 10_200),
        status("10:30:00", 0, VI_STATUS_AUCTION),
        trade("10:32:15", 10_250, SIDE_AUCTION, 800, vi_status=VI_STATUS_RELEASED),
        *drift("10:32:16", "11:00:00", 10_250, 10_300),
    ]


def test_a_type_nothing_decides_is_unknown_not_dynamic():
    [flagged] = detect(halt_without_a_type(), use_flags=True)
    assert flagged == (at("10:30:00"), "unknown", 1, at("10:32:15"), 10_250)
    [rules] = detect(unflagged(halt_without_a_type()), use_flags=False)
    assert rules[1:] == ("unknown", 1, at("10:32:15"), 10_250)


# ------------------------------------------------------------------ the closing call of an expiry day


def test_the_expiry_day_closing_band_follows_index_membership():
    expiry = krx.derivatives_expiry_day(2024, 3)  # 2024-03-14
    rows = [
        trade("09:00:05", BASE, SIDE_AUCTION, 900, day=expiry),
        *drift("09:00:06", "15:19:50", 10_000, 10_000, day=expiry),
        # the close would uncross 1.5% up at 15:30:08: a VI extends the closing call to 15:32:20
        trade("15:32:20", 10_150, SIDE_AUCTION, 2_000, day=expiry),
    ]
    [member] = detect(rows, use_flags=False, day=expiry, kosdaq150=True)
    assert member[1:] == ("dynamic", 1, at("15:32:20", expiry), 10_150)  # 1% for a KOSDAQ150 member
    assert at("15:30:00", expiry) <= member[0] <= at("15:30:30", expiry)
    [other] = detect(rows, use_flags=False, day=expiry)
    assert other[1] == "unknown"  # 1.5% is inside the 4% closing band of other stocks
