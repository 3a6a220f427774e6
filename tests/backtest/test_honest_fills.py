"""The execution model is never kinder than the market: each test is a defect a careful user found
(issue 29) on a hand-built tape: a fill on a book the market no longer showed, a look into the
next second of whole-second KIS stamps, a losing position that vanished from the figures, a sale
booked against the wrong holding, liquidity taken twice, a walk through a VI band."""

from __future__ import annotations

import datetime as dt

import pytest

from backtest.clock import FeedClock
from backtest.engine import BacktestConfig, Backtester, decision_ready
from backtest.execution import (
    BUY,
    SELL,
    ExecutionConfig,
    OrderRequest,
    OrderType,
    TimeInForce,
    Venue,
    new_order,
)
from backtest.strategies import ExitRules, MomentumRule
from backtest.strategy import Decision, EventInfo, Strategy
from backtest.tape import LiveTape
from market import krx
from tests.backtest.conftest import DAY, T0, make_tape, row

ZERO = ExecutionConfig(0, 0)
OPEN = krx.at_seoul(DAY, dt.time(9, 0))


def send(venue: Venue, request: OrderRequest, at_us: int):
    order = new_order(request, at_us, venue.config)
    fills = venue.arrive(order)
    while (p := venue.next_fill(order, int(venue.tape.ts[-1]))) is not None:
        fills += venue.take(p)
    return order, fills


def at_open(ms: float, *args, **kwargs) -> dict:
    r = row(0, *args, **kwargs)
    r["timestamp"] = OPEN + int(ms * 1000)
    return r


# the opening call: an indicative book crossed at 302,500, the uncross prints 302,500 at 09:00:00.5
# and the first book the continuous market shows comes 500 ms later: 302,000 bid, 303,000 ask
OPENING = [
    at_open(-10_000, "indicative", price=302_500, volume=600, session="opening_auction",
            bids=[(303_000, 500), (302_500, 300)], asks=[(301_500, 400), (302_000, 200)]),
    at_open(500, "trade", price=302_500, volume=600, side=0, session="opening_auction"),
    at_open(500, "status", session="continuous"),
    at_open(1_000, bids=[(302_000, 100)], asks=[(303_000, 150), (303_500, 500)]),
    at_open(5_000, "trade", price=303_000, volume=10, side=1),
    at_open(5_000, bids=[(302_000, 100)], asks=[(303_000, 140), (303_500, 500)]),
]  # fmt: skip


def test_no_fill_on_the_auctions_crossed_book_after_the_uncross():
    tape = make_tape(OPENING, base_price=300_000)
    assert tape.book[1] == -1 and tape.shown[1] == -1  # the uncross brings no book and carries none
    venue = Venue(tape, ZERO)
    # a limit buy at 302,000 10 ms after the uncross: the market then shows no ask at or under it
    limit, fills = send(venue, OrderRequest("005930", BUY, 50, OrderType.LIMIT, 302_000), OPEN + 510_000)
    assert fills == [] and limit.status == "working"
    # a market buy 10 ms after the uncross waits for the first book shown and pays its ask
    market, fills = send(Venue(tape, ZERO), OrderRequest("005930", BUY, 100), OPEN + 510_000)
    assert market.status == "filled"
    assert [(f.price, f.qty, f.fill_ts) for f in fills] == [(303_000, 100, OPEN + 1_000_000)]
    # an IOC order cannot wait: the book at its arrival is unknown, so it is cancelled unfilled
    ioc, fills = send(
        Venue(tape, ZERO), OrderRequest("005930", BUY, 10, OrderType.LIMIT, 303_000, TimeInForce.IOC),
        OPEN + 510_000,
    )  # fmt: skip
    assert fills == [] and ioc.status == "cancelled" and "unknown" in ioc.reject_reason


# KIS stamps whole seconds: the crash at 10:00:00.600 is stamped 100000 like everything that second
S = T0 + 1_000_000  # 10:00:01
CRASH = [
    row(0, bids=[(10_000, 500)], asks=[(10_010, 500)], recv_ms=30),
    row(0, "trade", price=10_000, volume=10, side=-1, recv_ms=40),
    row(0, bids=[(10_000, 490)], asks=[(10_010, 500)], recv_ms=45),
    row(1_000, "trade", price=9_500, volume=400, side=-1, recv_ms=1_620),
    row(1_000, bids=[(9_500, 300)], asks=[(9_510, 100)], recv_ms=1_625),
]
KIS = FeedClock(feed_latency_us=20_000)  # stamps detected as whole seconds


def test_a_whole_second_stamp_is_not_a_look_into_that_second():
    tape = make_tape(CRASH, clock=KIS)
    assert tape.ts[3] == S + 600_000 and tape.local_ts[3] == S + 620_000  # recv less the feed latency
    # a decision at the start of the second sees the market before the crash
    assert tape.last_trade_at(S) == 10_000 and tape.quotes(tape.seen_at(S)) == (10_000, 10_010)
    assert decision_ready(tape, S) == S  # its second (stamped 10:00:00) was all received by then
    # a sell sent at S meets the pre-crash bid unless it reaches the exchange after the crash
    for latency_ms, price in ((0, 10_000), (30, 10_000), (300, 10_000), (900, 9_500)):
        venue = Venue(tape, ExecutionConfig(latency_ms * 1000, 0))
        _, fills = send(venue, OrderRequest("005930", SELL, 100), S)
        assert [f.price for f in fills] == [price], latency_ms


def test_the_live_tape_applies_the_same_two_clocks():
    from market.events.detector import StockDay

    recorded = make_tape(CRASH, clock=KIS)
    live = LiveTape("005930", StockDay(DAY, "KOSPI", False, 10_000), KIS, resolution=krx.US_PER_SECOND)
    for r in CRASH:
        live.append({**r, "recv_ts": r["recv_ts"]})
    grown = live.tape()
    for f in ("ts", "local_ts", "book", "shown", "mark", "last_price"):
        assert grown.__dict__[f].tolist() == recorded.__dict__[f].tolist(), f


# a 하한가 lock: after the buy the price falls to the lower limit and no one bids again
LOCK = [
    row(0, bids=[(10_000, 500)], asks=[(10_010, 500)]),
    row(0, "trade", price=10_010, volume=1, side=1),
    row(0, bids=[(10_000, 500)], asks=[(10_010, 499)]),
    row(20_000, "trade", price=7_000, volume=100, side=-1),
    row(20_000, asks=[(7_000, 90_000)]),
    *(row(20_000 + 10_000 * k, asks=[(7_000, 90_000 + k)]) for k in range(1, 60)),
]
EVENT = EventInfo("005930-1", "005930", "KOSPI", DAY, T0 - 130_000_000, T0, 1, "dynamic", 10_000)


class _Scripted(Strategy):
    """Buys what it is told at the first decision and sells it at every later one."""

    name = "scripted"

    def __init__(self, qty: int) -> None:
        super().__init__()
        self.qty = qty

    def on_decision(self, d, ctx):
        if d.offset_s == 0:
            return [OrderRequest(d.event.stock_code, BUY, self.qty, event_id=d.event.event_id)]
        held = ctx.position(d.event.stock_code)
        if held and not ctx.working(d.event.event_id):
            return [OrderRequest(d.event.stock_code, SELL, held, event_id=d.event.event_id)]
        return []


def test_a_position_that_never_closes_stays_in_every_figure():
    from backtest.metrics import compare_runs

    tape = make_tape(LOCK)
    at = [T0 + 1_000_000] + [T0 + (11 + 10 * k) * 1_000_000 for k in range(1, 6)]  # then after the crash
    decisions = {EVENT.event_id: [Decision(EVENT, k, t, 0, {}, {}) for k, t in enumerate(at)]}
    run = Backtester(lambda c, d: tape, BacktestConfig(ZERO, capital=10_000_000)).run(
        _Scripted(10), [EVENT], decisions
    )
    assert [(f.side, f.price) for f in run.fills] == [(BUY, 10_010)]  # no one ever bought it back
    lots = run.lots_frame()
    assert len(lots) == 1 and lots["status"].iloc[0] == "open"
    # marked at 7,000 (no bid shown: the last trade) net of what selling would cost
    rate = krx.DEFAULT_BROKERAGE_RATE
    buy_cost = 10 * 10_010 + int(10 * 10_010 * rate)
    sell_net = 70_000 - int(70_000 * rate) - int(70_000 * 0.0018)
    assert lots["pnl"].iloc[0] == pytest.approx(sell_net - buy_cost)
    result = compare_runs({("scripted", "zero"): run}, _groups(), [DAY], 10_000_000)
    m = result["json"]["scripted | zero latency"]
    assert m["trades"] == 1 and m["open_at_end"] == 1 and m["net_pnl"] == pytest.approx(sell_net - buy_cost)
    assert m["max_drawdown"] > 0  # the equity marked every second saw the fall


def _groups():
    import pandas as pd

    return pd.DataFrame({"event_id": ["005930-1", "005930-2"], "cause": ["news"] * 2,
                         "vi_type": ["dynamic"] * 2, "direction": ["up", "down"]})  # fmt: skip


def test_a_sell_out_under_another_vi_closes_the_lot_it_sold():
    rows = [
        row(0, "trade", price=10_000, volume=1, side=-1),
        row(0, bids=[(10_000, 5_000)], asks=[(10_010, 5_000)]),
    ]
    rows += [
        row(ms, bids=[(10_000, 5_000 + ms // 1000)], asks=[(10_010, 5_000)])
        for ms in range(1_000, 400_000, 1_000)
    ]
    tape = make_tape(rows)
    up = EVENT
    down = EventInfo("005930-2", "005930", "KOSPI", DAY, T0, T0 + 30_000_000, -1, "dynamic", 10_000)
    features = {"auc_price_dir": 0.01, "pre_trade_strength_dir": 0.5}
    decisions = {
        up.event_id: [Decision(up, 0, T0 + 1_000_000, 0, features, {})],
        down.event_id: [Decision(down, 0, T0 + 31_000_000, 0, features, {})],
    }
    rule = MomentumRule(ExitRules(hold_s=100))
    run = Backtester(lambda c, d: tape, BacktestConfig(ZERO, capital=10_000_000)).run(
        rule, [up, down], decisions
    )
    assert [(f.side, f.event_id) for f in run.fills] == [(BUY, up.event_id), (SELL, down.event_id)]
    lots = run.lots_frame()
    assert len(lots) == 1 and lots["event_id"].iloc[0] == up.event_id and lots["status"].iloc[0] == "closed"
    assert lots["exit_reason"].iloc[0] == "down VI continuing: sell out"
    assert run.rejections == []  # the up VI's own exit does not try to sell what is gone


# three levels of bids that the recorded market keeps showing unchanged for ten seconds
BIDS = [(10_000, 200), (9_990, 100), (9_980, 1_000)]


def test_liquidity_we_took_stays_taken_until_the_book_changes_there():
    rows = [row(ms, bids=BIDS, asks=[(10_010, 100)]) for ms in range(0, 10_000, 1_000)]
    rows.append(row(10_000, bids=[(10_000, 250), *BIDS[1:]], asks=[(10_010, 100)]))  # 10,000 refilled
    venue = Venue(make_tape(rows), ZERO)
    _, first = send(venue, OrderRequest("005930", SELL, 300), T0 + 500_000)
    _, second = send(venue, OrderRequest("005930", SELL, 300), T0 + 5_500_000)
    _, third = send(venue, OrderRequest("005930", SELL, 300), T0 + 10_500_000)
    assert [(f.price, f.qty) for f in first] == [(10_000, 200), (9_990, 100)]
    assert [(f.price, f.qty) for f in second] == [(9_980, 300)]  # not the same 300 again
    # the book now shows 250 at 10,000: a change there, so it is there for us again; 9,990 is not
    assert [(f.price, f.qty) for f in third] == [(10_000, 250), (9_980, 50)]


def test_a_walk_stops_at_the_vi_band_and_never_fills_beyond_it():
    asks = [(10_100, 100), (10_300, 100), (10_500, 100), (10_600, 100), (10_700, 400)]
    rows = [row(0, "trade", price=10_000, volume=10, side=1), row(0, bids=[(9_990, 100)], asks=asks)]
    tape = make_tape(rows, market="KOSDAQ")
    order, fills = send(Venue(tape, ZERO), OrderRequest("005930", BUY, 400), T0 + 1_000)
    # 10,600 is +6% from the last trade: KOSDAQ's dynamic band, where KRX would halt the stock
    assert [(f.price, f.qty) for f in fills] == [(10_100, 100), (10_300, 100), (10_500, 100)]
    assert order.status == "cancelled" and "VI" in order.reject_reason
    # a limit order keeps the rest resting at its price instead
    limit, fills = send(
        Venue(tape, ZERO), OrderRequest("005930", BUY, 400, OrderType.LIMIT, 10_700), T0 + 1_000
    )
    assert sum(f.qty for f in fills) == 300 and limit.status == "working" and limit.remaining == 100
    # a KOSPI200 member's dynamic band is 3%: the same ladder stops after 10,100
    tape200 = make_tape(rows, market="KOSPI", kospi200=True)
    _, fills = send(Venue(tape200, ZERO), OrderRequest("005930", BUY, 400), T0 + 1_000)
    assert [(f.price, f.qty) for f in fills] == [(10_100, 100)]
