"""The exchange engine against the KRX rules: scenarios for each rule, a brute-force oracle for
the uncross, and properties of whole random trading days."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.reference_book import ReferenceBook
from market import krx
from market.exchange import kernels as k
from market.exchange.engine import BUY, SELL, Exchange, ExchangeConfig, Instrument, OrderRejected
from market.exchange.random_flow import random_order_stream
from market.krx.schema import TICK_SCHEMA, VI_LOG_SCHEMA, check_table

DAY = dt.date(2024, 3, 5)
K200 = Instrument("005930", "삼성전자", "KOSPI", kospi200=True)  # dynamic band 3%
SMALL = Instrument("123450", "비캡전자", "KOSDAQ", kospi200=False)  # dynamic band 6%


def T(h: int, m: int, s: int = 0, us: int = 0) -> int:
    return krx.epoch_us(dt.datetime(DAY.year, DAY.month, DAY.day, h, m, s, us, tzinfo=krx.SEOUL))


def opened(stock: Instrument = K200, base: int = 70_000, **config) -> Exchange:
    """An exchange in continuous trading whose opening call crossed 1 share at the base price."""
    ex = Exchange(stock, DAY, base, config=ExchangeConfig(**config), seed=3)
    ex.submit_limit(T(8, 35), BUY, base, 1)
    ex.submit_limit(T(8, 35), SELL, base, 1)
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert ex.phase == "continuous" and ex.last_price == base
    return ex


def fills_of(ex: Exchange, order_id: int) -> int:
    f = ex.fills()
    return int(f[f[:, k.F_ORDER] == order_id, k.F_QTY].sum())


# ------------------------------------------------------------------ continuous trading


def test_price_then_time_priority():
    ex = opened()
    a = ex.submit_limit(T(9, 1), SELL, 70_200, 10)
    b = ex.submit_limit(T(9, 1, 1), SELL, 70_100, 10)  # better price, later
    c = ex.submit_limit(T(9, 1, 2), SELL, 70_100, 10)  # same price, later still
    ex.submit_limit(T(9, 2), BUY, 70_200, 15)
    assert (fills_of(ex, b), fills_of(ex, c), fills_of(ex, a)) == (10, 5, 0)
    assert ex.order_remaining(c) == 5 and ex.best_ask() == 70_100


def test_trade_rows_per_price_level_and_aggressor_side():
    ex = opened()
    ex.submit_limit(T(9, 1), BUY, 69_900, 5)
    ex.submit_limit(T(9, 1), BUY, 69_800, 5)
    ex.submit_limit(T(9, 2), SELL, 69_800, 8)
    out = ex.raw_events()
    trades = out[(out[:, k.C_TYPE] == k.EV_TRADE) & (out[:, k.C_TS] == T(9, 2))]
    assert trades[:, [k.C_PRICE, k.C_VOLUME, k.C_SIDE]].tolist() == [[69_900, 5, -1], [69_800, 3, -1]]
    assert ex.cum_volume == 1 + 8 and ex.dynamic_reference == 69_800


def test_rejections_name_the_reason():
    ex = opened()
    with pytest.raises(OrderRejected, match="off-grid"):
        ex.submit_limit(T(9, 1), BUY, 70_050, 1)  # tick is 100 here
    with pytest.raises(OrderRejected, match="outside the daily limits"):
        ex.submit_limit(T(9, 1), BUY, ex.upper_limit + 100, 1)
    with pytest.raises(OrderRejected, match="quantity"):
        ex.submit_limit(T(9, 1), BUY, 70_000, 0)
    with pytest.raises(OrderRejected, match="no such live order"):
        ex.cancel(T(9, 1), 999)
    early = Exchange(K200, DAY, 70_000)
    with pytest.raises(OrderRejected, match="closed"):
        early.submit_limit(T(8, 0), BUY, 70_000, 1)
    with pytest.raises(ValueError, match="non-decreasing time"):
        ex.submit_limit(T(8, 59), BUY, 70_000, 1)


def test_cancel_removes_the_order_and_its_quantity():
    ex = opened()
    a = ex.submit_limit(T(9, 1), BUY, 69_500, 7)
    ex.submit_limit(T(9, 1), BUY, 69_400, 3)
    ex.cancel(T(9, 2), a)
    assert ex.best_bid() == 69_400 and ex.order_remaining(a) == 0
    grid, bid_qty, _ = ex.depth()
    assert bid_qty[np.searchsorted(grid, 69_500)] == 0
    with pytest.raises(OrderRejected):
        ex.cancel(T(9, 3), a)


def test_market_order_rest_is_cancelled_in_continuous_trading():
    ex = opened(vi_enabled=False)
    ex.submit_limit(T(9, 1), SELL, 70_100, 5)
    oid = ex.submit_market(T(9, 2), BUY, 50)
    assert fills_of(ex, oid) == 5 and ex.order_remaining(oid) == 0 and ex.best_bid() == 0


# ------------------------------------------------------------------ call auctions


def brute_force_uncross(bids, asks, grid, previous):
    """The KRX uncross written plainly over every grid price: (price, volume) or (0, 0)."""
    best = None
    for p in grid:
        cum_b = sum(q for price, q in bids if price >= p)
        cum_a = sum(q for price, q in asks if price <= p)
        vol = min(cum_b, cum_a)
        bids_above = sum(q for price, q in bids if price > p)
        asks_below = sum(q for price, q in asks if price < p)
        if vol == 0 or bids_above > vol or asks_below > vol:
            continue
        key = (-vol, abs(p - previous), p)
        if best is None or key < best[0]:
            best = (key, int(p), vol)
    return (best[1], best[2]) if best else (0, 0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bids=st.lists(st.tuples(st.integers(-12, 12), st.integers(1, 60)), max_size=12),
    asks=st.lists(st.tuples(st.integers(-12, 12), st.integers(1, 60)), max_size=12),
)
def test_uncross_matches_brute_force(bids, asks):
    ex = Exchange(SMALL, DAY, 12_340, config=ExchangeConfig(vi_enabled=False))
    mid = int(np.searchsorted(ex.grid, 12_340))
    bids = [(int(ex.grid[mid + o]), q) for o, q in bids]
    asks = [(int(ex.grid[mid + o]), q) for o, q in asks]
    for price, q in bids:
        ex.submit_limit(T(8, 45), BUY, price, q)
    for price, q in asks:
        ex.submit_limit(T(8, 45), SELL, price, q)
    want = brute_force_uncross(bids, asks, ex.grid, 12_340)
    assert ex.indicative() == want
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert ex.open_price == want[0] and ex.cum_volume == want[1]
    f = ex.fills()
    for side in (1, -1):  # both sides fill exactly the uncross volume, all at the uncross price
        assert f[f[:, k.F_SIDE] == side, k.F_QTY].sum() == want[1]
    assert set(f[:, k.F_PRICE].tolist()) <= {want[0]}


def test_opening_price_tie_goes_to_the_price_nearest_the_base():
    ex = Exchange(K200, DAY, 70_000)
    ex.submit_limit(T(8, 31), BUY, 70_500, 100)
    ex.submit_limit(T(8, 32), SELL, 69_500, 100)
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert ex.open_price == 70_000 and ex.static_reference == 70_000 == ex.dynamic_reference


def test_uncross_price_sits_where_one_side_is_partly_filled():
    ex = Exchange(K200, DAY, 70_000)
    ex.submit_limit(T(8, 31), BUY, 70_500, 10)
    a = ex.submit_limit(T(8, 32), SELL, 69_500, 20)
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert ex.open_price == 69_500 and ex.order_remaining(a) == 10


def test_allocation_is_time_priority_and_quantity_priority_at_a_limit_price():
    ex = Exchange(K200, DAY, 70_000)
    first = ex.submit_limit(T(8, 31), BUY, 70_000, 10)
    second = ex.submit_limit(T(8, 32), BUY, 70_000, 50)
    ex.submit_limit(T(8, 33), SELL, 70_000, 30)
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert (fills_of(ex, first), fills_of(ex, second)) == (10, 20)

    up = Exchange(K200, DAY, 70_000)
    small = up.submit_limit(T(8, 31), BUY, up.upper_limit, 10)
    big = up.submit_limit(T(8, 32), BUY, up.upper_limit, 50)
    up.submit_limit(T(8, 33), SELL, up.upper_limit, 30)
    up.finish()  # the open at +30% is a static VI; its auction clears at the limit
    assert up.open_price == up.upper_limit
    assert (fills_of(up, small), fills_of(up, big)) == (0, 30)  # 상한가: larger order first


def test_indicative_rows_start_at_0840():
    ex = Exchange(K200, DAY, 70_000)
    ex.submit_limit(T(8, 31), BUY, 70_000, 5)
    ex.submit_limit(T(8, 39), SELL, 70_000, 5)
    ex.submit_limit(T(8, 41), SELL, 70_000, 5)
    ind = ex.raw_events()
    ind = ind[ind[:, k.C_TYPE] == k.EV_INDICATIVE]
    assert ind[:, [k.C_TS, k.C_PRICE, k.C_VOLUME]].tolist() == [[T(8, 41), 70_000, 5]]


def test_closing_call_ends_at_a_random_moment_within_thirty_seconds():
    ends = set()
    for seed in range(12):
        ex = Exchange(K200, DAY, 70_000, seed=seed)
        ex.submit_limit(T(8, 35), BUY, 70_000, 1)
        ex.submit_limit(T(8, 35), SELL, 70_000, 1)
        ex.submit_limit(T(15, 25), BUY, 70_100, 3)
        ex.submit_limit(T(15, 25), SELL, 70_000, 3)
        ex.finish()
        log = ex.raw_events()
        close = log[-1]
        assert close[k.C_TYPE] == k.EV_STATUS and ex.phase == "closed" and ex.close_price == 70_000
        assert T(15, 30) <= close[k.C_TS] <= T(15, 30, 30)
        ends.add(int(close[k.C_TS]))
    assert len(ends) == 12


# ------------------------------------------------------------------ volatility interruptions


def ladder(ex: Exchange, ts: int, side: int, start: int, stop: int, qty: int) -> None:
    market = ex.instrument.market
    step = 1 if side == SELL else -1
    p = start
    while (p <= stop) if side == SELL else (p >= stop):
        ex.submit_limit(ts, side, p, qty)
        p = krx.ceil_to_tick(p + 1, market, DAY) if step == 1 else krx.floor_to_tick(p - 1, market, DAY)


@pytest.mark.parametrize("inband", [True, False])
def test_dynamic_vi_fires_at_the_first_level_reaching_the_band(inband):
    ex = opened(vi_inband_fill=inband)  # KOSPI200: 3%, last price 70,000
    ladder(ex, T(9, 1), SELL, 70_500, 73_000, 10)
    oid = ex.submit_limit(T(9, 2), BUY, 73_000, 200)
    vi = ex.vi_log().to_pylist()[0]
    assert (vi["vi_type"], vi["direction"], vi["ref_price"], vi["trigger_price"]) == (
        "dynamic",
        1,
        70_000,
        72_100,
    )
    assert ex.phase == "vi_auction"
    filled = fills_of(ex, oid)
    assert filled == (160 if inband else 0)  # 70,500 .. 72,000 is 16 levels in band
    assert ex.order_remaining(oid) == 200 - filled  # the rest waits in the VI auction at its limit


def test_vi_auction_lasts_two_minutes_plus_random_end_and_resets_both_references():
    durations = []
    for seed in range(10):
        ex = Exchange(K200, DAY, 70_000, seed=seed)
        ex.submit_limit(T(8, 35), BUY, 70_000, 1)
        ex.submit_limit(T(8, 35), SELL, 70_000, 1)
        ladder(ex, T(9, 1), SELL, 70_500, 73_000, 10)
        ex.submit_limit(T(9, 2), BUY, 73_000, 200)
        ex.submit_limit(T(9, 2, 10), SELL, 72_500, 30)
        out = ex.raw_events()
        during = out[out[:, k.C_TS] > T(9, 2)]
        assert not np.any(during[:, k.C_TYPE] == k.EV_TRADE)  # nothing trades in the auction
        ex.advance(T(9, 5))
        vi = ex.vi_log().to_pylist()[0]
        durations.append((vi["release_ts"] - vi["trigger_ts"]).total_seconds())
        assert vi["auction_price"] == ex.static_reference == ex.dynamic_reference == ex.last_price
        release = ex.raw_events()
        release = release[release[:, k.C_TS] == krx.epoch_us(vi["release_ts"])]
        assert set(release[:, k.C_VI_STATUS].tolist()) == {2}  # release instant rows
        assert release[release[:, k.C_TYPE] == k.EV_TRADE, k.C_SIDE].tolist() == [0]
    assert all(120 <= d <= 150 for d in durations) and len(set(durations)) > 1


def test_static_reference_is_the_latest_auction_price_including_dynamic_vi():
    ex = opened(SMALL, 10_000)  # KOSDAQ: dynamic 6%, static 10% of the latest auction price
    ladder(ex, T(9, 1), SELL, 10_010, 10_600, 5)
    ex.submit_limit(T(9, 2), BUY, 10_600, 500)  # dynamic VI at +6%
    ex.advance(T(9, 5))
    auction = ex.vi_log().to_pylist()[0]["auction_price"]
    assert ex.static_reference == auction
    # climb in small steps (each < 6%) until a print reaches auction price x 1.10: a static VI
    ladder(ex, T(9, 6), SELL, auction + 10, int(auction * 1.12), 2)
    price = auction
    t = T(9, 7)
    while not ex.vi_active:
        price = krx.ceil_to_tick(price + 10, "KOSDAQ", DAY)
        ex.submit_limit(t, BUY, price, 2)
        t += 1_000_000
    vi = ex.vi_log().to_pylist()[1]
    assert vi["vi_type"] == "static" and vi["ref_price"] == auction
    assert vi["trigger_price"] == krx.ceil_to_tick(-(-auction * 11 // 10), "KOSDAQ", DAY)


def test_both_bands_at_once_is_type_both():
    ex = opened(SMALL, 10_000)
    ex.submit_limit(T(9, 1), SELL, 11_050, 10)  # a gap: the next print is +10.5%
    ex.submit_limit(T(9, 2), BUY, 11_050, 10)
    vi = ex.vi_log().to_pylist()[0]
    assert (vi["vi_type"], vi["ref_price"], vi["trigger_price"]) == ("both", 10_000, 11_050)


def test_no_daily_cap_on_vis():
    ex = opened(SMALL, 10_000)
    t = T(9, 1)
    for i in range(8):  # +7%, -7%, +7%, ...: each print sets off a dynamic VI that clears there
        move = 107 if i % 2 == 0 else 93
        target = krx.floor_to_tick(ex.last_price * move // 100, "KOSDAQ", DAY)
        ex.submit_limit(t, SELL, target, 10)
        ex.submit_limit(t, BUY, target, 10)
        assert ex.vi_active, f"VI {i + 1} did not fire"
        t += 200 * 1_000_000
        ex.advance(t)
        assert ex.last_price == target
    assert len(ex.vi_log()) == 8 and ex.vi_log().column("vi_type").to_pylist() == ["dynamic"] * 8


def test_static_vi_at_the_open_extends_the_opening_call():
    ex = Exchange(K200, DAY, 70_000, seed=1)
    ex.submit_limit(T(8, 31), BUY, 78_000, 10)  # would open +11.4%
    ex.submit_limit(T(8, 31), SELL, 77_000, 10)
    ex.advance(T(9, 0, 30))  # past the opening call's random end
    assert ex.phase == "vi_auction" and ex.open_price == 0
    vi = ex.vi_log().to_pylist()[0]
    assert (vi["vi_type"], vi["ref_price"], vi["trigger_price"]) == ("static", 70_000, 77_000)
    ex.advance(T(9, 3))
    assert ex.phase == "continuous" and ex.open_price == 77_000 == ex.static_reference


def test_the_opening_call_ends_at_a_random_moment_within_30_s():
    ends = []
    for seed in range(20):
        ex = Exchange(K200, DAY, 70_000, seed=seed)
        ex.submit_limit(T(8, 35), BUY, 70_000, 1)
        ex.submit_limit(T(8, 35), SELL, 70_000, 1)
        ex.submit_limit(T(9, 0, 0, 500), BUY, 70_100, 5)  # after 09:00, before any random end
        ex.submit_limit(T(9, 0, 0, 500), SELL, 70_100, 5)
        ex.advance(T(9, 0, 30))
        open_print = next(r for r in ex.ticks().to_pylist() if r["event_type"] == "trade")
        end = ex.opening_auction_end_us
        assert T(9, 0) <= end <= T(9, 0, 30) and krx.epoch_us(open_print["timestamp"]) == end
        # the orders sent after 09:00 joined the call: one single-price print at 70,100
        assert (open_print["side"], open_print["volume"], open_print["price"]) == (0, 5, 70_100)
        assert open_print["session"] == "opening_auction"
        ends.append(end)
    assert max(ends) - min(ends) > 15_000_000  # spread over the window, microseconds apart
    nominal = Exchange(K200, DAY, 70_000, config=ExchangeConfig(opening_random_end=False), seed=3)
    assert nominal.opening_auction_end_us == T(9, 0)


def test_a_csat_day_runs_every_session_an_hour_later():
    csat = dt.date(2024, 11, 14)

    def at(h, m, s=0):
        return krx.epoch_us(dt.datetime(2024, 11, 14, h, m, s, tzinfo=krx.SEOUL))

    ex = Exchange(SMALL, csat, 10_000, seed=5)
    with pytest.raises(OrderRejected, match="market closed"):
        ex.submit_limit(at(9, 20), BUY, 10_000, 1)  # the opening call starts at 09:30
    ex.submit_limit(at(9, 35), BUY, 10_000, 10)
    ex.submit_limit(at(9, 35), SELL, 10_000, 10)
    ex.advance(at(9, 59, 59))
    assert ex.phase == "opening_auction" and ex.cum_volume == 0
    ex.advance(at(10, 0, 30))
    assert ex.phase == "continuous" and at(10, 0) <= ex.opening_auction_end_us <= at(10, 0, 30)
    ex.submit_limit(at(16, 25), BUY, 10_010, 3)
    ex.submit_limit(at(16, 25), SELL, 10_010, 3)
    assert ex.phase == "closing_auction"  # from 16:20
    ex.finish()
    close = [r for r in ex.ticks().to_pylist() if r["event_type"] == "trade"][-1]
    assert at(16, 30) <= krx.epoch_us(close["timestamp"]) <= at(16, 30, 30) and close["price"] == 10_010


@pytest.mark.parametrize(
    ("membership", "vi"),
    [({"kosdaq150": True}, True), ({"futures_underlying": True}, True), ({}, False)],
)
def test_expiry_day_closing_band_is_one_percent_for_every_derivatives_underlying(membership, vi):
    expiry = krx.derivatives_expiry_day(2024, 3)  # 2024-03-14
    stock = Instrument("123450", "비캡전자", "KOSDAQ", kospi200=False, **membership)

    def at(h, m, s=0):
        return krx.epoch_us(dt.datetime(2024, 3, 14, h, m, s, tzinfo=krx.SEOUL))

    ex = Exchange(stock, expiry, 10_000, seed=3)
    ex.submit_limit(at(8, 35), BUY, 10_000, 1)
    ex.submit_limit(at(8, 35), SELL, 10_000, 1)
    ex.submit_limit(at(15, 25), BUY, 10_150, 10)  # the close would print 1.5% up
    ex.submit_limit(at(15, 25), SELL, 10_150, 10)
    ex.finish()
    log = ex.vi_log().to_pylist()
    assert len(log) == int(vi) and ex.close_price == 10_150
    if vi:
        assert (log[0]["vi_type"], log[0]["ref_price"]) == ("dynamic", 10_000)


def test_closing_auction_vi_extends_the_close():
    ex = opened(SMALL, 10_000)
    ex.submit_limit(T(15, 25), BUY, 10_500, 10)  # closing band is 4% for this stock
    ex.submit_limit(T(15, 25), SELL, 10_500, 10)
    ex.finish()
    vi = ex.vi_log().to_pylist()[0]
    assert vi["vi_type"] == "dynamic" and vi["auction_price"] == 10_500 == ex.close_price
    assert vi["trigger_ts"] >= dt.datetime(2024, 3, 5, 15, 30, tzinfo=krx.SEOUL)
    assert 120 <= (vi["release_ts"] - vi["trigger_ts"]).total_seconds() <= 150


def test_vi_running_at_1520_is_released_by_the_closing_call():
    ex = opened()
    ladder(ex, T(15, 19), SELL, 70_500, 73_000, 10)
    ex.submit_limit(T(15, 19, 30), BUY, 73_000, 200)
    ex.finish()
    vi = ex.vi_log().to_pylist()[0]
    assert vi["release_ts"] >= dt.datetime(2024, 3, 5, 15, 30, tzinfo=krx.SEOUL)
    assert vi["auction_price"] == ex.close_price


def test_vi_disabled_on_a_listing_day():
    ex = opened(vi_enabled=False)
    ladder(ex, T(9, 1), SELL, 70_500, 80_000, 10)
    ex.submit_limit(T(9, 2), BUY, 80_000, 1_000)
    assert len(ex.vi_log()) == 0 and ex.last_price == 80_000


# ------------------------------------------------------------------ whole random days


def random_day(seed: int, stock: Instrument, inband: bool, p_market: float, mid_step: float) -> Exchange:
    rng = np.random.default_rng(seed)
    base = 12_340 if stock.market == "KOSDAQ" else 70_000
    ex = Exchange(stock, DAY, base, config=ExchangeConfig(vi_inband_fill=inband), seed=seed)
    phases = [
        (T(8, 30), T(9, 0), 300, 0.0),
        (T(9, 0), T(15, 20), 6_000, p_market),
        (T(15, 20), T(15, 30), 200, 0.0),
    ]
    for start, end, n, pm in phases:
        mid = int(np.searchsorted(ex.grid, ex.last_price or base))
        s = random_order_stream(
            rng,
            ex.grid,
            n,
            start,
            end,
            first_order_id=ex.next_order_id,
            mid_index=mid,
            p_market=pm,
            mid_step=mid_step,
        )
        ex.process(s.ts, s.kind, s.side, s.price, s.qty, s.target)
    ex.finish()
    return ex


day_params = st.tuples(
    st.integers(0, 10_000),
    st.sampled_from([K200, SMALL]),
    st.booleans(),
    st.sampled_from([0.02, 0.1]),
    st.sampled_from([0.05, 0.4, 1.0, 2.5]),  # calm to wild drift of the order flow
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=day_params)
def test_random_day_invariants(params):
    ex = random_day(*params)
    out = ex.raw_events()
    grid = set(ex.grid.tolist())
    trades = out[out[:, k.C_TYPE] == k.EV_TRADE]
    # every trade price is on the grid and inside the daily limits
    assert set(trades[:, k.C_PRICE].tolist()) <= grid
    # cum_volume is the running sum of trade volume
    assert np.array_equal(trades[:, k.C_CUM_VOLUME], np.cumsum(trades[:, k.C_VOLUME]))
    # the book is never crossed in continuous trading
    books = out[(out[:, k.C_TYPE] == k.EV_BOOK) & (out[:, k.C_PHASE] == k.PH_CONTINUOUS)]
    bid1, ask1 = books[:, k.C_BOOK], books[:, k.C_BOOK + k.LEVELS]
    both = (bid1 > 0) & (ask1 > 0)
    assert np.all(bid1[both] < ask1[both])
    # continuous trades happen only in continuous trading; auctions trade only at their uncross
    continuous = trades[trades[:, k.C_SIDE] != 0]
    assert np.all(continuous[:, k.C_PHASE] == k.PH_CONTINUOUS) and np.all(continuous[:, k.C_VI_STATUS] == 0)
    vi = ex.vi_records()
    close_ts = int(out[-1, k.C_TS])
    uncross_times = {ex.opening_auction_end_us, close_ts, *vi[:, k.V_RELEASE_TS].tolist()}
    assert set(trades[trades[:, k.C_SIDE] == 0, k.C_TS].tolist()) <= uncross_times
    # a VI fires exactly when an execution would reach a band: replay the references
    static_bp = krx.rate_to_bp(krx.STATIC_VI_RATE)
    dynamic_bp = krx.rate_to_bp(krx.dynamic_vi_rate(ex.instrument.kospi200, "continuous"))
    static_ref = last_price = ex.base_price
    order, ref_at_order_start = None, None  # the dynamic reference is the last print before an order
    vi_by_ts = {int(r[k.V_TRIGGER_TS]): r for r in vi if r[k.V_PHASE] == k.PH_CONTINUOUS}
    n_checked = 0
    for row in out:
        if row[k.C_TYPE] == k.EV_TRADE and row[k.C_SIDE] == 0:
            static_ref = last_price = row[k.C_PRICE]
            order = None
        elif row[k.C_TYPE] == k.EV_TRADE:
            if row[k.C_ORDER] != order:
                order, ref_at_order_start = row[k.C_ORDER], last_price
            assert krx.band_direction(row[k.C_PRICE], static_ref, static_bp) == 0
            assert krx.band_direction(row[k.C_PRICE], ref_at_order_start, dynamic_bp) == 0
            last_price = row[k.C_PRICE]
        elif row[k.C_TYPE] == k.EV_STATUS and row[k.C_VI_STATUS] == 1 and row[k.C_TS] in vi_by_ts:
            rec = vi_by_ts[row[k.C_TS]]
            dynamic_ref = ref_at_order_start if row[k.C_ORDER] == order else last_price
            s = krx.band_direction(rec[k.V_TRIGGER_PRICE], static_ref, static_bp)
            d = krx.band_direction(rec[k.V_TRIGGER_PRICE], dynamic_ref, dynamic_bp)
            assert rec[k.V_TYPE] == (1 if s else 0) | (2 if d else 0) != 0
            assert (rec[k.V_STATIC_REF], rec[k.V_DYNAMIC_REF]) == (static_ref, dynamic_ref)
            n_checked += 1
    assert n_checked == len(vi_by_ts)
    # VI auctions last 2 minutes plus a random end of at most 30 s (unless the close took them)
    done = vi[(vi[:, k.V_RELEASE_TS] > 0) & (vi[:, k.V_RELEASE_TS] < T(15, 20))]
    durations = (done[:, k.V_RELEASE_TS] - done[:, k.V_TRIGGER_TS]) / 1e6
    assert np.all((durations >= 120) & (durations <= 150))
    check_table(ex.ticks(), TICK_SCHEMA, source="engine ticks")
    check_table(ex.vi_log(), VI_LOG_SCHEMA, source="engine vi_log")


def test_wild_random_days_do_set_off_vis():
    """Guards the property test above: its wild days must exercise VIs, static and dynamic."""
    records = np.concatenate(
        [random_day(seed, stock, True, 0.1, 2.5).vi_records() for seed in range(3) for stock in (K200, SMALL)]
    )
    assert len(records) >= 6
    types = set(records[:, k.V_TYPE].tolist())
    assert k.VI_DYNAMIC in types and types & {k.VI_STATIC, k.VI_BOTH}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), p_market=st.sampled_from([0.0, 0.05, 0.2]))
def test_continuous_matching_equals_the_reference_book(seed, p_market):
    ex = opened(vi_enabled=False, emit_book=False)
    s = random_order_stream(
        np.random.default_rng(seed),
        ex.grid,
        3_000,
        T(9, 1),
        T(15, 0),
        first_order_id=ex.next_order_id,
        mid_index=int(np.searchsorted(ex.grid, 70_000)),
        p_market=p_market,
    )
    ex.process(s.ts, s.kind, s.side, s.price, s.qty, s.target)
    book = ReferenceBook()
    book.limit(0, BUY, 70_000, 1)  # the opening call's leftovers: none (1 share crossed 1 share)
    book.cancel(0)
    for i in range(len(s)):
        oid = ex.next_order_id - len(s) + i
        if s.kind[i] == k.K_LIMIT:
            book.limit(oid, int(s.side[i]), int(s.price[i]), int(s.qty[i]))
        elif s.kind[i] == k.K_MARKET:
            book.market(oid, int(s.side[i]), int(s.qty[i]))
        else:
            book.cancel(int(s.target[i]))
    out = ex.raw_events()
    trades = out[(out[:, k.C_TYPE] == k.EV_TRADE) & (out[:, k.C_SIDE] != 0)]
    assert [tuple(r) for r in trades[:, [k.C_PRICE, k.C_VOLUME, k.C_SIDE, k.C_ORDER]].tolist()] == book.trades


def test_same_seed_same_day_and_schema():
    a = random_day(5, SMALL, True, 0.1, 1.0)
    b = random_day(5, SMALL, True, 0.1, 1.0)
    assert a.ticks().equals(b.ticks()) and a.vi_log().equals(b.vi_log())
    c = random_day(6, SMALL, True, 0.1, 1.0)
    assert not a.ticks().equals(c.ticks())
    ticks = a.ticks()
    assert ticks.schema.field("timestamp").type == TICK_SCHEMA.field("timestamp").type
    sessions = set(ticks.column("session").to_pylist())
    assert {"opening_auction", "continuous", "closing_auction", "closed"} >= sessions >= {"continuous"}
