"""KRX rules against krx-market-rules.md: every band edge of every tick table, the limit rule with
its worked example, VI bands, taxes by settlement year, sessions, calendar and expiry days."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from market import krx
from market.krx.checks import on_tick_grid

NEW = dt.date(2023, 1, 25)  # first day of the unified table
OLD = dt.date(2023, 1, 24)  # last day of the old tables

# (price, tick) at both sides of every band edge, straight from the rules document
UNIFIED_EDGES = [
    (1, 1),
    (1_999, 1),
    (2_000, 5),
    (4_995, 5),
    (5_000, 10),
    (19_990, 10),
    (20_000, 50),
    (49_950, 50),
    (50_000, 100),
    (199_900, 100),
    (200_000, 500),
    (499_500, 500),
    (500_000, 1_000),
    (3_000_000, 1_000),
]
KOSPI_OLD_EDGES = [
    (1, 1),
    (999, 1),
    (1_000, 5),
    (4_995, 5),
    (5_000, 10),
    (9_990, 10),
    (10_000, 50),
    (49_950, 50),
    (50_000, 100),
    (99_900, 100),
    (100_000, 500),
    (499_500, 500),
    (500_000, 1_000),
]
KOSDAQ_OLD_EDGES = [
    (1, 1),
    (999, 1),
    (1_000, 5),
    (4_995, 5),
    (5_000, 10),
    (9_990, 10),
    (10_000, 50),
    (49_950, 50),
    (50_000, 100),
    (499_900, 100),
    (500_000, 100),
    (900_000, 100),
]


@pytest.mark.parametrize("market", ["KOSPI", "KOSDAQ"])
@pytest.mark.parametrize(("price", "tick"), UNIFIED_EDGES)
def test_unified_table_edges(market, price, tick):
    assert krx.tick_size(price, market, NEW) == tick
    assert krx.tick_size(price, market) == tick  # on=None means today's rules


@pytest.mark.parametrize(("price", "tick"), KOSPI_OLD_EDGES)
def test_kospi_pre2023_edges(price, tick):
    assert krx.tick_size(price, "KOSPI", OLD) == tick


@pytest.mark.parametrize(("price", "tick"), KOSDAQ_OLD_EDGES)
def test_kosdaq_pre2023_edges(price, tick):
    assert krx.tick_size(price, "KOSDAQ", OLD) == tick


def test_etf_keeps_five_won_tick():
    assert {krx.tick_size(p, "ETF", NEW) for p in (1_000, 9_990, 60_000)} == {5}


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown market 'NYSE'"):
        krx.tick_size(1_000, "NYSE")
    with pytest.raises(ValueError, match="positive"):
        krx.tick_size(0)
    with pytest.raises(ValueError, match="not on the KOSPI tick grid"):
        krx.price_limits(10_001, "KOSPI", NEW)
    with pytest.raises(ValueError, match="unknown session"):
        krx.dynamic_vi_rate(True, "opening_auction")


def test_worked_limit_example():
    assert krx.price_limits(9_980, "KOSPI", OLD) == (6_990, 12_950)
    assert krx.price_limits(9_980, "KOSPI", NEW) == (6_990, 12_970)


@pytest.mark.parametrize(
    ("base", "market", "on", "limits"),
    [
        (70_000, "KOSPI", NEW, (49_000, 91_000)),
        (1_000, "KOSDAQ", NEW, (700, 1_300)),
        (1_999, "KOSDAQ", NEW, (1_400, 2_595)),  # step 599 (tick 1); 2,598 floors to 2,595 (tick 5)
        (199_900, "KOSPI", NEW, (140_000, 259_500)),  # step 59,970 -> 59,900; 259,800 -> 259,500
        (48_000, "KOSPI", OLD, (33_600, 62_400)),
        (4_990, "KOSDAQ", OLD, (3_495, 6_480)),  # step 1,497 -> 1,495; 6,485 -> 6,480 (tick 10)
    ],
)
def test_price_limits_table(base, market, on, limits):
    assert krx.price_limits(base, market, on) == limits


MARKET_DATES = st.tuples(st.sampled_from(["KOSPI", "KOSDAQ"]), st.sampled_from([OLD, NEW]))


@given(price=st.integers(1, 3_000_000), md=MARKET_DATES)
def test_floor_and_ceil_bracket_the_price_on_the_grid(price, md):
    market, on = md
    lo, hi = krx.floor_to_tick(price, market, on), krx.ceil_to_tick(price, market, on)
    assert lo <= price <= hi
    assert krx.is_on_grid(lo, market, on) and krx.is_on_grid(hi, market, on)
    # no grid price lies strictly between them
    assert lo == price or krx.ceil_to_tick(lo + 1, market, on) == hi
    assert krx.is_on_grid(price, market, on) == (lo == price == hi)


@given(base_raw=st.integers(100, 2_000_000), md=MARKET_DATES)
def test_limits_are_on_grid_and_within_thirty_percent(base_raw, md):
    market, on = md
    base = krx.floor_to_tick(base_raw, market, on)
    lower, upper = krx.price_limits(base, market, on)
    assert krx.is_on_grid(lower, market, on) and krx.is_on_grid(upper, market, on)
    assert lower < base < upper
    assert base * 0.7 <= lower and upper <= base * 1.3
    # truncation loses less than one tick of the base on the way down, one tick of the top on the way up
    assert lower - base * 0.7 < krx.tick_size(base, market, on)
    assert base * 1.3 - upper < krx.tick_size(base, market, on) + krx.tick_size(upper, market, on)


@given(base_raw=st.integers(500, 900_000), md=MARKET_DATES)
def test_price_grid_is_every_valid_price(base_raw, md):
    market, on = md
    base = krx.floor_to_tick(base_raw, market, on)
    lower, upper = krx.price_limits(base, market, on)
    grid = krx.price_grid(lower, upper, market, on)
    assert grid[0] == lower and grid[-1] == upper
    assert np.all(krx.is_on_grid_array(grid, market, on))
    steps = np.diff(grid)
    assert np.array_equal(steps, krx.tick_size_array(grid[:-1], market, on))


@given(prices=st.lists(st.integers(-5, 2_000_000), min_size=1, max_size=50), md=MARKET_DATES)
def test_vectorised_ticks_match_scalar(prices, md):
    market, on = md
    arr = np.array(prices)
    want = [krx.tick_size(p, market, on) if p > 0 else 0 for p in prices]
    assert krx.tick_size_array(arr, market, on).tolist() == want
    assert krx.is_on_grid_array(arr, market, on).tolist() == [
        p > 0 and krx.is_on_grid(p, market, on) for p in prices
    ]


@pytest.mark.parametrize(
    ("kospi200", "session", "expiry", "rate"),
    [
        (True, "continuous", False, 0.03),
        (False, "continuous", False, 0.06),
        (True, "closing_auction", False, 0.02),
        (False, "closing_auction", False, 0.04),
        (True, "off_hours", False, 0.03),
        (False, "off_hours", False, 0.06),
        (True, "closing_auction", True, 0.01),
        (False, "closing_auction", True, 0.04),
        (True, "continuous", True, 0.03),
    ],
)
def test_dynamic_vi_rates(kospi200, session, expiry, rate):
    assert krx.dynamic_vi_rate(kospi200, session, expiry) == rate


@pytest.mark.parametrize(
    ("membership", "expiry", "rate"),
    [
        ({"kosdaq150": True}, True, 0.01),  # KOSDAQ150 constituent: the index futures' underlying
        ({"futures_underlying": True}, True, 0.01),  # 주식선물 기초자산
        ({"kosdaq150": True}, False, 0.04),
        ({}, True, 0.04),
    ],
)
def test_expiry_day_closing_band_covers_every_derivatives_underlying(membership, expiry, rate):
    assert krx.dynamic_vi_rate(False, "closing_auction", expiry, **membership) == rate
    assert krx.dynamic_vi_rate(False, "continuous", expiry, **membership) == 0.06


def test_static_rate_and_band_is_inclusive():
    assert krx.STATIC_VI_RATE == 0.10
    bp = krx.rate_to_bp(0.10)
    assert krx.band_direction(11_000, 10_000, bp) == 1  # exactly +10% fires
    assert krx.band_direction(10_990, 10_000, bp) == 0
    assert krx.band_direction(9_000, 10_000, bp) == -1  # exactly -10% fires
    assert krx.band_direction(9_010, 10_000, bp) == 0
    assert krx.band_direction(12_000, 0, bp) == 0  # no reference, no VI


@given(
    price=st.integers(1, 2_000_000), ref=st.integers(1, 2_000_000), pct=st.sampled_from([1, 2, 3, 4, 6, 10])
)
def test_band_direction_matches_exact_fractions(price, ref, pct):
    from fractions import Fraction

    dev = Fraction(price - ref, ref)
    want = 1 if dev >= Fraction(pct, 100) else -1 if dev <= -Fraction(pct, 100) else 0
    assert krx.band_direction(price, ref, pct * 100) == want


@pytest.mark.parametrize(
    ("market", "sold", "rate"),
    [
        ("KOSPI", dt.date(2021, 6, 1), 0.0023),
        ("KOSDAQ", dt.date(2022, 6, 2), 0.0023),
        ("KOSPI", dt.date(2023, 6, 1), 0.0020),
        ("KOSDAQ", dt.date(2024, 6, 3), 0.0018),
        ("KOSPI", dt.date(2025, 6, 2), 0.0015),
        ("KOSDAQ", dt.date(2026, 6, 2), 0.0020),
        ("KOSPI", dt.date(2024, 12, 26), 0.0018),  # settles 2024-12-30
        ("KOSPI", dt.date(2024, 12, 27), 0.0015),
    ],  # settles 2025-01-02: the 2025 rate applies
)
def test_sell_tax_follows_settlement_year(market, sold, rate):
    assert krx.sell_tax_rate(market, sold) == rate


def test_sell_tax_unknown_year_is_an_error():
    with pytest.raises(ValueError, match="settlement year 2020"):
        krx.sell_tax_rate("KOSPI", dt.date(2020, 6, 1))


def test_cost_model():
    costs = krx.CostModel(brokerage_rate=0.0001)
    day = dt.date(2024, 6, 3)
    assert costs.buy_cost(1_000_000) == pytest.approx(100)
    assert costs.sell_cost(1_000_000, "KOSPI", day) == pytest.approx(100 + 1_800)
    assert costs.round_trip_rate("KOSDAQ", day) == pytest.approx(0.0002 + 0.0018)
    assert krx.CostModel().brokerage_rate == 0.00014


def test_calendar_and_settlement():
    days = krx.trading_days(dt.date(2024, 9, 13), dt.date(2024, 9, 19))
    assert days == [dt.date(2024, 9, 13), dt.date(2024, 9, 19)]  # 추석 16-18 and a weekend
    assert krx.settlement_date(dt.date(2024, 9, 13)) == dt.date(2024, 9, 20)
    assert not krx.is_trading_day(dt.date(2024, 12, 31))  # year-end closing day
    assert krx.next_trading_days(dt.date(2024, 1, 1), 2) == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]


@pytest.mark.parametrize(
    ("year", "month", "expiry"),
    [
        (2024, 3, dt.date(2024, 3, 14)),
        (2024, 6, dt.date(2024, 6, 13)),
        (2024, 1, dt.date(2024, 1, 11)),
        (2025, 10, dt.date(2025, 10, 2)),
    ],  # 2025-10-09 (한글날) and the days before it are holidays
)
def test_derivatives_expiry(year, month, expiry):
    assert krx.derivatives_expiry_day(year, month) == expiry
    assert krx.is_derivatives_expiry_day(expiry)
    assert not krx.is_derivatives_expiry_day(expiry + dt.timedelta(days=1))


def test_session_schedule():
    s = krx.session_schedule(dt.date(2024, 3, 5))
    assert (
        s.opening_auction_start.time(),
        s.continuous_start.time(),
        s.closing_auction_start.time(),
        s.closing_auction_end.time(),
    ) == (dt.time(8, 30), dt.time(9), dt.time(15, 20), dt.time(15, 30))
    assert s.session_at(s.continuous_start - dt.timedelta(seconds=1)) == "opening_auction"
    assert s.session_at(s.continuous_start) == "continuous"
    assert s.session_at(s.closing_auction_start) == "closing_auction"
    assert str(s.continuous_start.tzinfo) == "Asia/Seoul"
    first = krx.session_schedule(dt.date(2025, 1, 2))
    assert first.continuous_start.time() == dt.time(10)


@pytest.mark.parametrize("day", sorted(krx.CSAT_DAYS))
def test_csat_days_move_every_session_an_hour_later_where_xkrx_does_not(day):
    assert krx.is_trading_day(day) and day.weekday() == 3  # 수능 is a Thursday
    s = krx.session_schedule(day)
    times = (
        s.opening_auction_start,
        s.indicative_from,
        s.continuous_start,
        s.closing_auction_start,
        s.closing_auction_end,
        s.post_close_start,
        s.off_hours_start,
        s.off_hours_end,
    )
    assert [t.time() for t in times] == [
        dt.time(9, 30),
        dt.time(9, 40),
        dt.time(10),
        dt.time(16, 20),
        dt.time(16, 30),
        dt.time(16, 40),
        dt.time(17),
        dt.time(18),  # the off-hours session still ends at 18:00
    ]
    # exchange-calendars' XKRX knows the late open up to 2020 only: from 2021 it opens at 09:00
    xkrx_open = krx.trading_calendar().session_open(day.isoformat()).tz_convert(krx.SEOUL).hour
    assert xkrx_open == (10 if day.year <= 2020 else 9)


def test_labels_after_the_closing_call_name_the_after_hours_sessions():
    s = krx.session_schedule(dt.date(2024, 3, 5))

    def label(clock: str) -> str:
        return s.session_at(dt.datetime.combine(s.day, dt.time.fromisoformat(clock), krx.SEOUL))

    assert [
        label(c) for c in ("15:30:21", "15:33:00", "15:39:59", "15:40", "15:59:59", "16:00", "17:59:59")
    ] == [
        "closing_auction",  # the random end and a VI extension of the close stay in the closing call
        "closing_auction",
        "closing_auction",
        "post_close",  # 장후 시간외 종가
        "post_close",
        "off_hours",  # 시간외 단일가
        "off_hours",
    ]
    assert label("18:00") == "closed" == label("08:29:59")
    csat = krx.session_schedule(dt.date(2024, 11, 14))
    clocks = ("09:45", "16:25", "16:45", "17:30")
    stamps = [krx.at_seoul(csat.day, dt.time.fromisoformat(c)) for c in clocks]
    assert krx.session_labels_by_day(np.array(stamps)).tolist() == [
        "opening_auction",
        "closing_auction",
        "post_close",
        "off_hours",
    ]


def test_the_opening_call_label_fits_until_the_random_end_can_have_come():
    s = krx.session_schedule(dt.date(2024, 3, 5))
    clocks = ("08:59:00", "09:00:17.123456", "09:00:30", "09:00:30.000001", "15:30:21", "15:31")
    us = np.array([krx.at_seoul(s.day, dt.time.fromisoformat(c)) for c in clocks])
    assert s.label_fits(us, np.array(["opening_auction"] * len(us))).tolist() == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert s.label_fits(us, np.array(["closed"] * len(us))).tolist() == [False] * 4 + [True, True]
    assert s.label_fits(us, s.session_labels(us)).all()


def test_random_end_delays_are_within_thirty_seconds():
    delays = krx.random_end_delays_us(np.random.default_rng(0), 10_000)
    assert delays.min() >= 0 and delays.max() <= 30_000_000
    assert delays.mean() == pytest.approx(15_000_000, rel=0.05)


@given(
    seconds=st.lists(st.integers(0, 86_399), min_size=1, max_size=40),
    # 2024-01-02 opens at 10:00 (new year), 2024-11-14 is CSAT, 2024-03-05 a regular day
    day=st.sampled_from([dt.date(2024, 1, 2), dt.date(2024, 11, 14), dt.date(2024, 3, 5)]),
)
def test_vectorised_session_labels_match_session_at(seconds, day):
    schedule = krx.session_schedule(day)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=krx.SEOUL)
    times = [start + dt.timedelta(seconds=s) for s in seconds]
    labels = schedule.session_labels(np.array([krx.epoch_us(t) for t in times]))
    assert labels.tolist() == [schedule.session_at(t) for t in times]


def test_epoch_us_needs_a_time_zone():
    with pytest.raises(ValueError, match="no time zone"):
        krx.epoch_us(dt.datetime(2024, 3, 5, 9))
    assert krx.epoch_us(dt.datetime(1970, 1, 1, 9, tzinfo=krx.SEOUL)) == 0


def test_session_labels_by_day_use_each_days_own_schedule():
    # 2024-01-02 opens at 10:00 (first session of the year); 2024-01-03 at 09:00
    stamps = [dt.datetime(2024, 1, d, 9, 30, tzinfo=krx.SEOUL) for d in (2, 3)]
    stamps += [dt.datetime(2024, 1, 3, 15, 25, tzinfo=krx.SEOUL)]
    labels = krx.session_labels_by_day(np.array([krx.epoch_us(t) for t in stamps]))
    assert labels.tolist() == ["opening_auction", "continuous", "closing_auction"]


def test_mid_point_prints_are_half_a_tick_off_the_grid_and_only_from_march_2025():
    """중간가호가 since 2025-03-04: the middle of 71,900 and 72,000 (tick 100) is 71,950; of 4,995
    and 5,000 (tick 5) 4,997.5, truncated to 4,997."""
    prices = np.array([71_950, 71_925, 4_997, 72_000])
    assert krx.is_on_grid_array(prices, "KOSPI", dt.date(2025, 7, 30), midpoint=True).tolist() == [
        True,
        False,
        True,
        True,
    ]
    assert krx.is_on_grid_array(prices, "KOSPI", dt.date(2025, 7, 30)).tolist() == [False, False, False, True]
    trades = pd.DataFrame(
        {
            "event_type": "trade",
            "price": [71_950, 71_950, 71_950],
            "market": "KOSPI",
            "session": ["continuous", "closing_auction", "continuous"],
            "timestamp": pd.to_datetime(
                ["2025-07-30 10:00", "2025-07-30 15:30", "2025-02-28 10:00"]
            ).tz_localize("Asia/Seoul"),
        }
    )
    assert on_tick_grid(trades).tolist() == [True, False, False]
