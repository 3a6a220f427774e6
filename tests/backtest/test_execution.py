"""The execution model on crafted books: book walking, limits and grid, auctions, latency, queues
and costs computed by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.execution import (
    BUY,
    SELL,
    ExecutionConfig,
    OrderRequest,
    OrderType,
    QueueModel,
    TimeInForce,
    Venue,
    fill_costs,
    new_order,
)
from market import krx
from tests.backtest.conftest import DAY, T0, make_tape, row

ZERO = ExecutionConfig(0, 0)


def send(venue: Venue, request: OrderRequest, at_ms: float):
    order = new_order(request, T0 + int(at_ms * 1000), venue.config)
    return order, venue.arrive(order)


def all_fills(venue: Venue, order, first):
    fills = list(first)
    while (p := venue.next_fill(order, int(venue.tape.ts[-1]))) is not None:
        fills += venue.take(p)
    return fills


@st.composite
def books(draw):
    """A continuous-session book around 10,000 KRW (tick 10): 1-10 levels a side, random sizes."""
    n_bid, n_ask = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    best_bid = draw(st.integers(900, 1_100)) * 10
    gap = draw(st.integers(1, 3)) * 10
    bids = [(best_bid - 10 * i, draw(st.integers(1, 500))) for i in range(n_bid)]
    asks = [(best_bid + gap + 10 * i, draw(st.integers(1, 500))) for i in range(n_ask)]
    return bids, asks


@settings(max_examples=200, deadline=None)
@given(
    book=books(),
    qty=st.integers(1, 3_000),
    side=st.sampled_from([BUY, SELL]),
    limit_ticks=st.one_of(st.none(), st.integers(-5, 15)),
)
def test_a_marketable_order_never_beats_the_book_walked_to_its_size(book, qty, side, limit_ticks):
    bids, asks = book
    tape = make_tape([row(0, bids=bids, asks=asks)])
    venue = Venue(tape, ZERO)
    opposite = asks if side == BUY else bids
    if limit_ticks is None:
        req = OrderRequest("005930", side, qty)
    else:
        limit = opposite[0][0] + side * 10 * limit_ticks
        req = OrderRequest("005930", side, qty, OrderType.LIMIT, limit, TimeInForce.IOC)
    order, fills = send(venue, req, 1)
    assert sum(f.qty for f in fills) <= qty
    # the price of the level where the displayed size reaches our quantity (or the last level)
    cum = np.cumsum([q for _, q in opposite])
    walked_to = opposite[min(int(np.searchsorted(cum, qty)), len(opposite) - 1)][0]
    shown = dict(opposite)
    taken: dict[int, int] = {}
    for f in fills:
        assert (f.price <= walked_to) if side == BUY else (f.price >= walked_to)
        if req.limit_price is not None:
            assert (f.price <= req.limit_price) if side == BUY else (f.price >= req.limit_price)
        assert tape.lower_limit <= f.price <= tape.upper_limit and krx.is_on_grid(f.price, "KOSPI", DAY)
        taken[f.price] = taken.get(f.price, 0) + f.qty
    assert all(q <= shown[p] for p, q in taken.items())  # never more than a level shows
    assert order.status in ("filled", "cancelled")  # IOC and market leftovers are cancelled


def test_limit_prices_off_the_grid_or_beyond_the_daily_limits_are_refused():
    venue = Venue(make_tape([row(0, bids=[(10_000, 10)], asks=[(10_010, 10)])]), ZERO)
    assert "tick grid" in venue.check(OrderRequest("005930", BUY, 1, OrderType.LIMIT, 10_005))
    assert "daily limits" in venue.check(OrderRequest("005930", BUY, 1, OrderType.LIMIT, 13_010))
    assert "daily limits" in venue.check(OrderRequest("005930", SELL, 1, OrderType.LIMIT, 6_990))
    assert venue.check(OrderRequest("005930", BUY, 1, OrderType.LIMIT, 13_000)) == ""  # 상한가 itself


# a VI auction from 0 ms to 120 s: indicative rows with a crossed book, then the uncross at 10,300
AUCTION = [
    row(0, "status", bids=[(10_000, 50)], asks=[(10_010, 50)], vi_status=1),
    row(1_000, "indicative", price=10_300, bids=[(10_400, 900)], asks=[(10_200, 900)], vi_status=1),
    row(60_000, "indicative", price=10_300, bids=[(10_500, 900)], asks=[(10_100, 900)], vi_status=1),
    row(
        121_000,
        "trade",
        price=10_300,
        volume=800,
        side=0,
        bids=[(10_290, 40)],
        asks=[(10_300, 60)],
        vi_status=2,
    ),
    row(122_000, "trade", price=10_300, volume=60, side=1, bids=[(10_290, 40)], asks=[(10_310, 60)]),
    row(125_000, "trade", price=10_290, volume=30, side=-1, bids=[(10_290, 10)], asks=[(10_310, 60)]),
    row(126_000, "trade", price=10_290, volume=25, side=-1, bids=[(10_290, 5)], asks=[(10_310, 60)]),
]


@pytest.mark.parametrize(
    ("order_type", "limit", "qty", "filled", "price"),
    [
        (OrderType.MARKET, None, 100, 100, 10_300),  # a market order takes the uncross price
        (OrderType.LIMIT, 10_500, 100, 100, 10_300),  # better than the uncross: fills there
        (OrderType.MARKET, None, 5_000, 800, 10_300),  # at most what the uncross matched
        (OrderType.LIMIT, 10_300, 100, 0, None),  # at the price: may be the one left unfilled
        (OrderType.LIMIT, 10_200, 100, 0, None),  # worse: not in the auction
    ],
)
def test_an_order_in_an_auction_fills_at_the_uncross_price_or_not_at_all(
    order_type, limit, qty, filled, price
):
    venue = Venue(make_tape(AUCTION), ZERO)
    order, first = send(venue, OrderRequest("005930", BUY, qty, order_type, limit), 30_000)
    assert first == [] and order.status == "auction"  # nothing fills while the auction runs
    # the crossed indicative book of 60 s does not fill it either
    p = venue.next_fill(order, T0 + 120_000_000)
    assert p is None
    p = venue.next_fill(order, T0 + 121_000_000)
    if filled:
        (fill,) = venue.take(p)
        assert (fill.qty, fill.price, fill.liquidity) == (filled, price, "auction")
        assert fill.fill_ts == T0 + 121_000_000
    else:
        assert p is None or p.ts > T0 + 121_000_000


def test_a_limit_order_left_over_by_the_auction_rests_and_fills_in_continuous_trading():
    venue = Venue(make_tape(AUCTION), ZERO)
    order, _ = send(venue, OrderRequest("005930", BUY, 50, OrderType.LIMIT, 10_290), 30_000)
    fills = all_fills(venue, order, [])
    # behind the 40 bid shares displayed at 10,290 after the uncross: the 30-share sell at 125 s
    # leaves 10 ahead, the 25-share sell at 126 s fills 15 of ours; the rest keeps resting
    assert [(f.qty, f.price, f.liquidity, f.fill_ts - T0) for f in fills] == [
        (15, 10_290, "maker", 126_000_000)
    ]
    assert order.status == "working" and order.remaining == 35


def test_latency_decides_which_book_an_order_meets():
    rows = [
        row(0, bids=[(10_000, 100)], asks=[(10_010, 100)]),
        row(20, bids=[(10_000, 100)], asks=[(10_050, 100)]),  # the ask lifts 20 ms after we decide
    ]
    tape = make_tape(rows)
    for cfg, price, ack in ((ZERO, 10_010, 1), (ExecutionConfig(30_000, 25_000), 10_050, 1 + 30 + 25)):
        venue = Venue(tape, cfg)
        _, fills = send(venue, OrderRequest("005930", BUY, 10), 1)
        assert [(f.price, f.qty) for f in fills] == [(price, 10)]
        assert fills[0].ack_ts == T0 + ack * 1000 and fills[0].order_ts == T0 + 1000


QUEUE = [
    row(0, bids=[(10_000, 500)], asks=[(10_010, 100)]),
    row(1_000, "trade", price=10_000, volume=300, side=-1, bids=[(10_000, 200)], asks=[(10_010, 100)]),
    row(2_000, bids=[(10_000, 100)], asks=[(10_010, 100)]),  # 100 cancelled: ahead of us or behind?
    row(3_000, "trade", price=10_000, volume=150, side=-1, bids=[(10_000, 50)], asks=[(10_010, 100)]),
    row(4_000, "trade", price=9_990, volume=10, side=-1, bids=[(9_990, 90)], asks=[(10_010, 100)]),
]


def test_a_resting_order_queues_behind_the_displayed_size_and_advances_on_trades():
    venue = Venue(make_tape(QUEUE), ZERO)
    order, first = send(venue, OrderRequest("005930", BUY, 80, OrderType.LIMIT, 10_000), 500)
    assert first == [] and order.queue_ahead == 500
    fills = all_fills(venue, order, first)
    # risk-averse: 300 traded leaves 200 ahead; the cancel of 100 leaves min(200, 100) = 100 ahead;
    # the 150-share sell then fills 50 of ours; the trade through at 9,990 fills the other 30
    assert [(f.qty, f.price, f.fill_ts - T0) for f in fills] == [
        (50, 10_000, 3_000_000),
        (30, 10_000, 4_000_000),
    ]
    assert all(f.liquidity == "maker" for f in fills)


def test_the_probabilistic_queue_moves_us_forward_on_cancellations():
    rows = [
        row(0, bids=[(10_000, 500)], asks=[(10_010, 100)]),  # we join behind these 500
        row(1_000, bids=[(10_000, 900)], asks=[(10_010, 100)]),  # 400 more join behind us
        row(2_000, bids=[(10_000, 500)], asks=[(10_010, 100)]),  # 400 cancelled: from where?
        row(3_000, "trade", price=10_000, volume=300, side=-1, bids=[(10_000, 200)], asks=[(10_010, 100)]),
    ]
    got = {}
    for cfg in (ZERO, ExecutionConfig(0, 0, QueueModel.PROBABILISTIC)):
        v = Venue(make_tape(rows), cfg)
        o, _ = send(v, OrderRequest("005930", BUY, 80, OrderType.LIMIT, 10_000), 500)
        got[cfg.queue_model] = [f.qty for f in all_fills(v, o, [])]
    # risk-averse: every cancel was behind us, 500 stay ahead and a 300-share sell fills nothing;
    # probabilistic (f(x) = x^2): 500^2 / (500^2 + 400^2) of the 400 were ahead, 256.1 stay ahead
    ahead = 500 - 400 * 500**2 / (500**2 + 400**2)
    assert got[QueueModel.RISK_AVERSE] == []
    assert got[QueueModel.PROBABILISTIC] == [int(300 - ahead)] == [43]


@pytest.mark.parametrize(
    ("traded_on", "market", "tax_rate"),
    [
        (dt.date(2024, 6, 3), "KOSPI", 0.0018),
        (dt.date(2024, 12, 26), "KOSDAQ", 0.0018),  # settles 2024-12-30
        (dt.date(2024, 12, 27), "KOSDAQ", 0.0015),  # settles 2025-01-02: next year's rate
        (dt.date(2025, 6, 2), "KOSPI", 0.0015),
        (dt.date(2026, 6, 2), "KOSPI", 0.0020),
    ],
)
def test_costs_equal_hand_computed_trades(traded_on, market, tax_rate):
    rate = 0.00015
    tax = int(Decimal(3_120_000) * Decimal(str(tax_rate)))  # exact, then truncated to won
    # buy 300 at 10,050: 3,015,000 KRW, brokerage 452.25 -> 452; sell 300 at 10,400: 3,120,000 KRW,
    # brokerage 468, and the tax of the settlement year
    assert fill_costs(BUY, 300 * 10_050, market, traded_on, rate) == (452, 0)
    assert fill_costs(SELL, 300 * 10_400, market, traded_on, rate) == (468, tax)
    # the same through a venue: a round trip on that day
    rows = [row(0, bids=[(10_400, 1_000)], asks=[(10_050, 1_000)])]
    venue = Venue(make_tape(rows, market=market, day=traded_on), ExecutionConfig(0, 0, brokerage_rate=rate))
    _, (buy,) = send(venue, OrderRequest("005930", BUY, 300), 1)
    _, (sell,) = send(venue, OrderRequest("005930", SELL, 300), 2)
    assert (buy.cash_flow, sell.cash_flow) == (-3_015_000 - 452, 3_120_000 - 468 - tax)


def test_a_window_ending_inside_an_auction_runs_to_its_uncross():
    tape = make_tape(AUCTION)
    assert tape.auction_end(T0 + 60_000_000) == T0 + 121_000_000  # inside the VI auction
    assert tape.auction_end(T0 + 123_000_000) == T0 + 123_000_000  # continuous trading
    window = tape.window(T0 + 1_000_000, tape.auction_end(T0 + 60_000_000))
    assert window.is_uncross(len(window) - 1) and window.ts[0] == T0 + 1_000_000


# a VI auction whose last indicative book explains its print: the engine's uncross of these levels
# (previous price 10,000) is 10,200 for 500 shares, as printed
EXPLAINED = [
    row(0, "trade", price=10_000, volume=10, side=1),
    row(0, bids=[(9_990, 100)], asks=[(10_000, 100)]),
    row(1_000, "status", vi_status=1),
    row(60_000, "indicative", price=10_200, volume=500, vi_status=1,
        bids=[(10_300, 200), (10_200, 300)], asks=[(10_100, 300), (10_200, 200), (10_300, 400)]),
    row(121_000, "trade", price=10_200, volume=500, side=0, vi_status=2),
    row(121_500, bids=[(10_190, 50)], asks=[(10_200, 80)]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("order_type", "limit", "qty", "filled", "price"),
    [
        # our market buy of 400 moves the uncross to 10,300 (600 shares cross there): we pay it
        (OrderType.MARKET, None, 400, 400, 10_300),
        (OrderType.LIMIT, 10_300, 100, 100, 10_200),  # better than the (unchanged) uncross: in full
        (OrderType.LIMIT, 10_200, 100, 0, None),  # at the price, behind the 300 shown there: nothing left
    ],
)
def test_an_order_in_an_auction_the_book_explains_fills_at_the_uncross_recomputed_with_it(
    order_type, limit, qty, filled, price
):
    venue = Venue(make_tape(EXPLAINED), ZERO)
    order, first = send(venue, OrderRequest("005930", BUY, qty, order_type, limit), 30_000)
    assert first == [] and order.status == "auction"
    fills = all_fills(venue, order, [])
    assert [(f.qty, f.price, f.liquidity) for f in fills if f.liquidity == "auction"] == (
        [(filled, price, "auction")] if filled else []
    )
