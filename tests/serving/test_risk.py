"""The live risk manager: each rule with its numbers, the session times of ordinary, CSAT and
new-year days read from market.krx, and properties against a straightforward recomputation."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from backtest.execution import BUY, SELL, OrderRequest, OrderType
from market import krx
from serving.risk import (
    RULES,
    Ask,
    Exposure,
    Quote,
    RiskLimits,
    RiskManager,
    WorkingOrder,
    short_sell,
    stock_notional,
)

DAY = dt.date(2024, 11, 13)  # a regular Wednesday
CSAT = dt.date(2024, 11, 14)  # every session one hour later
NEW_YEAR = dt.date(2025, 1, 2)  # the year's first trading day opens at 10:00
CODE = "005930"
SECOND = krx.US_PER_SECOND


def at(hhmmss: str, day: dt.date = DAY) -> int:
    return krx.parse_hhmmss(day, hhmmss)


NOON = at("120000")


def quote(last: int = 100_000, code: str = CODE, day: dt.date = DAY, market: str = "KOSPI") -> Quote:
    lower, upper = krx.price_limits(last, market, day)  # the base is the last price here
    return Quote(code, market, day, last, lower, upper)


def exposure(positions=None, marks=None, working=(), entered=frozenset(), pnl=0.0) -> Exposure:
    return Exposure(positions or {}, marks or {}, tuple(working), frozenset(entered), pnl)


def order(side: int = BUY, qty: int = 10, price: int | None = 100_000, code: str = CODE, event: str = ""):
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(code, side, qty, kind, price, event_id=event or f"{code}-1")


def check(req: OrderRequest, now_us: int = NOON, q: Quote | None = None, e: Exposure | None = None, **limits):
    """A fresh manager's answer (limits as keywords; the quote defaults to the day of ``now_us``)."""
    q = q or quote(day=krx.seoul_date(now_us))
    return RiskManager(RiskLimits(**limits)).check(req, now_us, q, e or exposure())


HELD = exposure(positions={CODE: 50}, marks={CODE: 100_000})


def test_an_ordinary_buy_and_a_sell_of_what_is_held_pass():
    assert check(order()) == ""
    assert check(order(price=None)) == ""
    assert check(order(SELL, 50), e=HELD) == ""


def test_the_kill_switch_refuses_every_order_and_says_why():
    risk = RiskManager(RiskLimits())
    risk.kill("broker disconnected")
    assert risk.killed and risk.kill_reason == "broker disconnected"
    for req in (order(), order(SELL, 1)):
        assert risk.check(req, NOON, quote(), HELD) == "kill switch: broker disconnected"


def test_orders_go_only_from_the_open_to_the_closing_calls_end():
    reason = check(order(), at("085959"))
    assert reason == "outside trading hours: it is 08:59:59, orders go 09:00:00-15:30:00 on 2024-11-13"
    assert check(order(), at("090000")) == ""
    assert check(order(SELL, 1), at("152959"), e=HELD) == ""
    assert "outside trading hours" in check(order(SELL, 1), at("153000"), e=HELD)
    assert check(order(), at("120000", dt.date(2024, 11, 16))) == "2024-11-16 is not a KRX trading day"


def test_new_buys_are_refused_in_the_closing_call_unless_allowed_but_sells_pass():
    assert check(order(), at("151959")) == ""
    reason = check(order(), at("152000"))
    assert reason == "no new buys in the closing call (15:20:00-15:30:00): it is 15:20:00"
    assert check(order(SELL, 1), at("152500"), e=HELD) == ""
    assert check(order(), at("152500"), closing_call_entries=True) == ""


def test_a_csat_day_moves_the_open_and_the_closing_call_an_hour_later():
    assert "it is 09:30:00, orders go 10:00:00-16:30:00" in check(order(), at("093000", CSAT))
    assert check(order(), at("100000", CSAT)) == ""
    assert check(order(), at("161959", CSAT)) == ""  # 15:20-16:20 is continuous trading on CSAT day
    assert "closing call (16:20:00-16:30:00)" in check(order(), at("162500", CSAT))
    assert check(order(SELL, 1), at("162959", CSAT), e=HELD) == ""
    assert "outside trading hours" in check(order(SELL, 1), at("162959"), e=HELD)  # a regular day is shut


def test_the_first_trading_day_of_the_year_opens_at_ten():
    assert "orders go 10:00:00-15:30:00 on 2025-01-02" in check(order(), at("093000", NEW_YEAR))
    assert check(order(), at("100000", NEW_YEAR)) == ""


def test_buys_stop_at_the_daily_loss_limit_while_sells_still_pass():
    assert check(order(), e=exposure(pnl=-999_999.0)) == ""
    losing = exposure(positions={CODE: 50}, marks={CODE: 100_000}, pnl=-1_000_000.0)
    assert check(order(), e=losing) == (
        "daily P&L -1,000,000 KRW at or below the loss limit -1,000,000: no new buys"
    )
    assert check(order(SELL, 50), e=losing) == ""


def test_the_per_order_notional_is_qty_times_the_limit_or_for_a_market_order_the_last_price():
    assert check(order(qty=100)) == ""  # exactly 10,000,000
    assert check(order(qty=123)) == "order notional 12,300,000 KRW over the per-order limit 10,000,000"
    assert "order notional 10,100,000" in check(order(qty=101, price=None))
    assert check(order(qty=101, price=None), q=quote(last=99_000)) == ""  # 9,999,000 at the last trade


def test_the_per_stock_notional_adds_the_position_at_its_mark_working_buys_and_the_order():
    at_limit = exposure(positions={CODE: 100}, marks={CODE: 100_000})
    assert check(order(qty=100), e=at_limit) == ""  # 10,000,000 held + 10,000,000 ordered
    e = exposure(positions={CODE: 101}, marks={CODE: 100_000})
    assert check(order(qty=100), e=e) == (
        "005930 notional 20,100,000 KRW (held 10,100,000 + working buys 0 + order 10,000,000) "
        "over the per-stock limit 20,000,000"
    )
    # a working buy is also a duplicate, so the rule is asked directly: a market buy at the mark
    working = [WorkingOrder(7, CODE, BUY, 50, 99_000, "e"), WorkingOrder(8, CODE, BUY, 10, None, "e")]
    e = exposure(positions={CODE: 100}, marks={CODE: 100_000}, working=working)
    assert stock_notional(Ask(order(qty=40), NOON, quote(), e, RiskLimits())) == ""  # 19,950,000
    reason = stock_notional(Ask(order(qty=41), NOON, quote(), e, RiskLimits()))
    assert "20,050,000 KRW (held 10,000,000 + working buys 5,950,000 + order 4,100,000)" in reason


def test_a_new_stock_beyond_the_position_count_is_refused_but_held_ones_still_trade():
    codes = ["000010", "000020", "000030", "000040"]
    e = exposure(positions=dict.fromkeys(codes, 1), working=[WorkingOrder(1, "000050", BUY, 1, 10_000, "x")])
    assert check(order(), e=e) == "5 stocks open, the limit is 5: no new stock"
    assert check(order(code="000010", qty=1), q=quote(code="000010"), e=e) == ""
    held_here = exposure(positions={**dict.fromkeys(codes, 1), CODE: 1})
    assert check(order(qty=1), e=held_here) == ""
    assert check(order(SELL, 1), e=held_here, max_positions=1) == ""


def test_limit_prices_must_be_on_the_grid_inside_the_daily_limits_and_near_the_last_trade():
    assert check(order(price=100_050)) == "limit price 100,050 is off the KOSPI tick grid"
    near_limit = quote(last=100_000)
    assert "outside the daily limits 70,000-130,000" in check(order(qty=1, price=130_100), q=near_limit)
    assert check(order(qty=1, price=105_000)) == ""  # 5.0% away: at the bound
    assert check(order(qty=1, price=105_100)) == (
        "limit price 105,100 is 5.1% from the last trade 100,000, over 5.0%"
    )
    assert check(order(SELL, 1, price=94_900), e=HELD).startswith("limit price 94,900 is 5.1%")


def test_an_order_needs_a_known_last_price_and_todays_quote_for_its_stock():
    no_trade = Quote(CODE, "KOSPI", DAY, 0, 70_000, 130_000)
    assert check(order(price=None), q=no_trade) == "no last price for 005930 (last 0)"
    stale = quote(day=dt.date(2024, 11, 12))
    assert check(order(), q=stale) == "the quote of 2024-11-12 is stale on 2024-11-13"
    assert check(order(), q=quote(code="000660")) == "the quote is for 000660, the order for 005930"


def test_malformed_orders_are_refused():
    assert check(order(qty=0)) == "quantity 0 is not positive"
    assert check(OrderRequest(CODE, 0, 1)) == "side 0 is neither buy (1) nor sell (-1)"
    assert check(OrderRequest(CODE, BUY, 1, OrderType.LIMIT)) == "a limit order without a limit price"
    assert "a market order with a limit price" in check(OrderRequest(CODE, BUY, 1, OrderType.MARKET, 100_000))


def test_no_selling_more_than_held_minus_working_sells():
    assert check(order(SELL, 51), e=HELD) == "sell 51 over the free position 50 (held 50, working sells 0)"
    assert check(order(SELL, 1)) == "sell 1 over the free position 0 (held 0, working sells 0)"
    e = exposure(positions={CODE: 50}, working=[WorkingOrder(3, CODE, SELL, 30, 101_000, "e")])
    reason = short_sell(Ask(order(SELL, 21), NOON, quote(), e, RiskLimits()))
    assert reason == "sell 21 over the free position 20 (held 50, working sells 30)"
    assert short_sell(Ask(order(SELL, 20), NOON, quote(), e, RiskLimits())) == ""


def test_a_working_order_of_the_same_stock_and_side_or_an_entered_event_is_a_duplicate():
    working = exposure(positions={CODE: 50}, working=[WorkingOrder(9, CODE, BUY, 5, 99_000, "005930-1")])
    assert check(order(), e=working) == "duplicate order: buy 9 of 005930 is still working"
    assert check(order(SELL, 10), e=working) == ""  # the other side is no duplicate
    entered = exposure(positions={CODE: 50}, entered={"005930-7"})
    assert check(order(event="005930-7"), e=entered) == "duplicate entry: event 005930-7 was already entered"
    assert check(order(SELL, 10, event="005930-7"), e=entered) == ""  # an exit of that entry
    assert check(order(event="005930-8"), e=entered) == ""


def test_the_rate_limit_counts_passes_in_a_sliding_minute():
    risk = RiskManager(RiskLimits(max_orders_per_minute=3))
    t0 = at("100000")
    for i in range(3):
        assert risk.check(order(), t0 + i * SECOND, quote(), exposure()) == ""
    assert risk.check(order(), t0 + 59 * SECOND, quote(), exposure()) == (
        "3 orders passed in the last 60 s, the limit is 3"
    )
    assert risk.check(order(qty=0), t0 + 59 * SECOND, quote(), exposure()) != ""  # refusals never count
    assert risk.check(order(), t0 + 60 * SECOND, quote(), exposure()) == ""  # the first pass left the window


def test_the_state_is_json_with_counts_by_rule():
    risk = RiskManager(RiskLimits(max_orders_per_minute=1))
    assert risk.check(order(), NOON, quote(), exposure()) == ""
    risk.check(order(), NOON + SECOND, quote(), exposure())
    risk.check(order(SELL, 1), NOON + SECOND, quote(), exposure())
    risk.kill("manual")
    risk.check(order(), NOON + 2 * SECOND, quote(), exposure())
    state = json.loads(json.dumps(risk.state(NOON + 2 * SECOND)))
    assert state["killed"] and state["kill_reason"] == "manual"
    assert state["limits"]["max_orders_per_minute"] == 1 and state["orders_last_minute"] == 1
    by_rule = state["refusals_by_rule"]
    assert state["passed"] == 1 and set(by_rule) == set(RULES)
    assert {k: v for k, v in by_rule.items() if v} == {"rate": 1, "short_sell": 1, "kill_switch": 1}
    assert risk.state(NOON + 61 * SECOND)["orders_last_minute"] == 0


def test_the_limits_are_frozen_and_reject_unknown_or_nonsense_fields():
    with pytest.raises(ValidationError):
        RiskLimits(max_notional=1)
    with pytest.raises(ValidationError):
        RiskLimits(max_positions=0)
    with pytest.raises(ValidationError):
        RiskLimits().max_positions = 3


# --- properties -------------------------------------------------------------------------------


@settings(deadline=None)
@given(
    day=st.sampled_from([dt.date(2022, 6, 15), DAY]),  # the pre-2023 and the unified tick tables
    market=st.sampled_from(["KOSPI", "KOSDAQ"]),
    base=st.integers(1_000, 700_000),
    last_at=st.floats(0, 1),
    offset=st.floats(-0.4, 0.4),
)
def test_a_limit_price_that_passes_is_on_the_grid_inside_the_limits_and_near_the_last(
    day, market, base, last_at, offset
):
    base = krx.floor_to_tick(base, market, day)
    lower, upper = krx.price_limits(base, market, day)
    grid = krx.price_grid(lower, upper, market, day)
    last = int(grid[int(last_at * (len(grid) - 1))])
    p = max(1, int(last * (1 + offset)))
    q = Quote(CODE, market, day, last, lower, upper)
    big = {"max_order_notional": 10**15, "max_stock_notional": 10**15}
    passed = check(order(qty=1, price=p), at("110000", day), q=q, **big) == ""
    assert passed == (p in set(grid.tolist()) and abs(p - last) <= 0.05 * last)


CODES = [f"00{i}000" for i in range(1, 9)]
WORKING = st.builds(
    WorkingOrder,
    client_id=st.integers(1, 99),
    stock_code=st.sampled_from(CODES),
    side=st.sampled_from([BUY, SELL]),
    qty=st.integers(1, 300),
    limit_price=st.none() | st.integers(950, 1_050).map(lambda x: x * 10),
    event_id=st.just("e"),
)
EXPOSURES = st.builds(
    exposure,
    positions=st.dictionaries(st.sampled_from(CODES), st.integers(0, 2_000), max_size=8),
    marks=st.dictionaries(st.sampled_from(CODES), st.integers(9_000, 11_000), max_size=8),
    working=st.lists(WORKING, max_size=6),
    entered=st.sets(st.sampled_from(["a", "b", "c"])),
    pnl=st.floats(-2_000_000, 500_000),
)


@settings(deadline=None, max_examples=200)
@given(
    e=EXPOSURES,
    code=st.sampled_from(CODES),
    qty=st.integers(1, 1_500),
    price=st.integers(950, 1_050).map(lambda x: x * 10),
    event=st.sampled_from(["a", "b", "c", "d"]),
    limits=st.fixed_dictionaries(
        {
            "max_order_notional": st.integers(1_000_000, 12_000_000),
            "max_stock_notional": st.integers(2_000_000, 30_000_000),
            "max_positions": st.integers(1, 8),
            "daily_loss_limit": st.integers(100_000, 1_500_000),
        }
    ),
)
def test_a_buy_passes_exactly_when_every_limit_holds(e, code, qty, price, event, limits):
    reason = check(order(BUY, qty, price, code, event), q=quote(10_000, code), e=e, **limits)
    mark = e.marks.get(code, 10_000)
    working_buys = [w for w in e.working if w.stock_code == code and w.side == BUY]
    in_stock = e.positions.get(code, 0) * mark + sum(w.qty * (w.limit_price or mark) for w in working_buys)
    held = {c for c, n in e.positions.items() if n > 0}
    open_stocks = held | {w.stock_code for w in e.working if w.side == BUY}
    every_limit_holds = (
        not working_buys
        and event not in e.entered_events
        and e.daily_pnl > -limits["daily_loss_limit"]
        and qty * price <= limits["max_order_notional"]
        and in_stock + qty * price <= limits["max_stock_notional"]
        and (code in open_stocks or len(open_stocks) < limits["max_positions"])
    )
    assert (reason == "") == every_limit_holds, reason


@settings(deadline=None)
@given(e=EXPOSURES, code=st.sampled_from(CODES), share=st.floats(0, 1), mkt=st.booleans())
def test_a_sell_of_at_most_the_free_position_never_fails_a_loss_notional_or_count_rule(e, code, share, mkt):
    working = [w for w in e.working if not (w.stock_code == code and w.side == SELL)]
    held = e.positions.get(code, 0) + 1
    e = exposure({**e.positions, code: held}, e.marks, working, e.entered_events, -(10**9))
    qty = max(1, int(share * held))
    tiny = dict(max_order_notional=1, max_stock_notional=1, max_positions=1, daily_loss_limit=1)
    req = order(SELL, qty, None if mkt else 10_000, code)
    assert check(req, q=quote(10_000, code), e=e, **tiny) == ""


@settings(deadline=None)
@given(n=st.integers(1, 6), gaps_s=st.lists(st.floats(0, 40), min_size=1, max_size=60))
def test_at_most_n_orders_pass_in_any_60_s_window_and_the_n_th_always_can(n, gaps_s):
    risk, t, passes = RiskManager(RiskLimits(max_orders_per_minute=n)), at("100000"), []
    for gap in gaps_s:
        t += int(gap * SECOND)
        in_window = sum(1 for p in passes if p > t - 60 * SECOND)
        passed = risk.check(order(qty=1), t, quote(), exposure()) == ""
        assert passed == (in_window < n)
        passes += [t] if passed else []
    assert all(sum(1 for p in passes if t - 60 * SECOND < p <= t) <= n for t in passes)
