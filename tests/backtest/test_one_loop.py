"""One exchange loop under three drivers: the same orders through the backtester, the RL simulator
and the live executor's simulated broker get the same fills and the same P&L; and the loop's own
rules (fills heard at their acknowledgement, KIS's REST pacing, the order inquiry)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from backtest.engine import BacktestConfig, Backtester
from backtest.execution import BUY, SELL, ExecutionConfig, OrderRequest, Venue
from backtest.latency import ConstantLatency, KisPacing, LognormalLatency
from backtest.runner import ExchangeLoop
from backtest.strategy import Decision, EventInfo, Strategy
from backtest.tape import LiveTape
from market.events.detector import StockDay
from serving.brokers import SimBroker
from tests.backtest.conftest import DAY, T0, make_tape, row
from training.rl.simulator import Episode, SimConfig, Simulator

US = 1_000_000
# ten seconds of a market that moves every 100 ms: the ask climbs a tick a second, the bid follows
ROWS = [
    r
    for ms in range(0, 12_000, 100)
    for r in (
        row(ms, "trade", price=10_000 + 10 * (ms // 1000), volume=5, side=1),
        row(ms + 1, bids=[(10_000 + 10 * (ms // 1000) - 10, 300), (9_950, 1_000)],
            asks=[(10_000 + 10 * (ms // 1000), 120), (10_100, 1_000)]),
    )
]  # fmt: skip
EVENT = EventInfo("005930-1", "005930", "KOSPI", DAY, T0 - 130 * US, T0, 1, "dynamic", 10_000)
CONFIG = ExecutionConfig(30_000, 20_000)
LOT = 2_000_000.0
BUY_AT, SELL_AT = T0 + 1 * US, T0 + 6 * US  # whole seconds: an RL step's time


class _Scripted(Strategy):
    """Buys the lot at decision 0 (sent at its time) and sells it all on the market second 6."""

    name = "scripted"

    def on_decision(self, d, ctx):
        qty = int(LOT // d.last_price)
        return (
            [OrderRequest(d.event.stock_code, BUY, qty, event_id=d.event.event_id)] if d.offset_s == 0 else []
        )

    def on_second(self, m, ctx):
        held = ctx.position(m.event.stock_code)
        if m.ts == SELL_AT and held:
            return [OrderRequest(m.event.stock_code, SELL, held, event_id=m.event.event_id)]
        return []


# the same market until 5 s, then a 하한가 lock: sellers at the lower limit, no bid ever again
LOCKED = [r for r in ROWS if r["timestamp"] < T0 + 5 * US] + [
    r
    for ms in range(5_000, 12_000, 100)
    for r in (row(ms, "trade", price=7_000, volume=5, side=-1), row(ms + 1, asks=[(7_000, 50_000)]))
]


def _backtest(tape):
    decisions = {EVENT.event_id: [Decision(EVENT, 0, BUY_AT, 0, {}, {})]}
    run = Backtester(lambda c, d: tape, BacktestConfig(CONFIG, capital=LOT * 1.5)).run(
        _Scripted(), [EVENT], decisions
    )
    return run.fills, run.account.cash, float(run.lots_frame()["pnl"].sum())


def _simulator(tape):
    episode = Episode(EVENT, tape, np.zeros((10, 1), np.float32), BUY_AT + np.arange(10) * US)
    sim = Simulator(episode, SimConfig(horizon_s=60, lot_notional=LOT, execution=CONFIG))
    sim.buy()
    while sim.t < SELL_AT:
        sim.advance()
    sim.sell()
    while not sim.done:
        sim.advance()
    return sim.fills, sim.loop.account.cash, sim.net_pnl()


def _live(tape, rows=ROWS):
    """The rows as the feed delivers them, the orders sent on the executor's clock."""
    sd = StockDay(DAY, "KOSPI", False, 10_000)
    live = LiveTape("005930", sd)
    broker = SimBroker(lambda code: live if code == "005930" else None, CONFIG, LOT * 1.5)
    fills, sent = [], set()

    async def drive():
        for r in rows:
            now = r["timestamp"]
            if now > BUY_AT and "buy" not in sent:
                qty = int(LOT // int(live.tape().last_price[-1]))
                broker.submit(1, OrderRequest("005930", BUY, qty, event_id=EVENT.event_id), BUY_AT)
                sent.add("buy")
            if now > SELL_AT and "sell" not in sent:
                held = broker.account.positions.get("005930", 0)
                broker.submit(2, OrderRequest("005930", SELL, held, event_id=EVENT.event_id), SELL_AT)
                sent.add("sell")
            live.append(r)
            broker.on_row("005930", now)
            fills.extend(e for e in await broker.poll(now) if hasattr(e, "fill_ts"))
        fills.extend(e for e in await broker.poll(2**62) if hasattr(e, "fill_ts"))

    asyncio.run(drive())
    marks = {"005930": int(live.tape().mark[-1])}  # a holding at the bid shown last (else the last trade)
    return fills, broker.account.cash, broker.account.equity(marks, DAY) - LOT * 1.5


@pytest.mark.parametrize("rows", [ROWS, LOCKED], ids=["round trip", "locked at the limit"])
def test_the_same_orders_through_the_three_drivers_get_the_same_fills_and_pnl(rows):
    tape = make_tape(rows)
    drivers = (("backtest", _backtest), ("rl", _simulator), ("live", lambda t: _live(t, rows)))
    results = {name: run(tape) for name, run in drivers}
    key = [(f.side, f.qty, f.price, f.fill_ts, f.ack_ts, f.brokerage, f.tax) for f in results["backtest"][0]]
    assert len(key) >= 2 and key[0][0] == BUY
    for name, (fills, cash, pnl) in results.items():
        assert [(f.side, f.qty, f.price, f.fill_ts, f.ack_ts, f.brokerage, f.tax) for f in fills] == key, name
        assert cash == pytest.approx(results["backtest"][1]), name
        # the P&L each reports: a lot still held counts at its bid (none: the last trade) net of exit costs
        assert pnl == pytest.approx(results["backtest"][2]), name
    if rows is LOCKED:  # nobody bought it back: the loss is in every figure, exit costs included
        held = sum(f.qty for f in results["backtest"][0])
        cost = sum(f.qty * f.price + f.brokerage for f in results["backtest"][0])
        value = held * 7_000
        exit_costs = int(value * CONFIG.brokerage_rate) + int(value * 0.0018)  # 2024's sell tax
        assert results["rl"][2] == pytest.approx(value - exit_costs - cost)


def _loop(config: ExecutionConfig, tape=None) -> ExchangeLoop:
    venue = Venue(tape or make_tape(ROWS), config)
    return ExchangeLoop(lambda code, day: venue, config, 10_000_000)


def test_a_fill_moves_the_account_only_when_it_is_heard_of():
    loop = _loop(ExecutionConfig(30_000, 50_000))
    loop.submit(OrderRequest("005930", BUY, 100), BUY_AT)
    assert loop.advance(BUY_AT + 30_000 + 49_999) == [] or loop.position("005930") == 0
    assert loop.position("005930") == 0 and loop.account.cash == 10_000_000  # filled, not yet heard
    heard = loop.advance(BUY_AT + 80_000)
    assert [r.kind for r in heard] == ["ack", "fill"] and loop.position("005930") == 100
    assert heard[1].fill.fill_ts == BUY_AT + 30_000 and heard[1].ts == BUY_AT + 80_000


def test_kis_pacing_spaces_every_rest_call_and_the_inquiry_reports_fills():
    paper = ExecutionConfig(30_000, 30_000, pacing=KisPacing.paper())
    loop = _loop(paper)
    first = loop.submit(OrderRequest("005930", BUY, 10), BUY_AT)
    second = loop.submit(OrderRequest("005930", BUY, 10), BUY_AT)
    # one REST call every 500 ms on a paper account: the second order goes out half a second later
    assert second.arrival_ts - first.arrival_ts == 500_000
    heard = loop.advance(BUY_AT + 3 * US)
    fills = [r for r in heard if r.kind == "fill"]
    # fills are heard when the order inquiry (polled every second, paced too) comes back, not at once
    assert len(fills) == 2 and all(r.ts > r.fill.fill_ts + 30_000 for r in fills)
    assert all(r.ts >= BUY_AT + US for r in fills)
    notice = _loop(ExecutionConfig(30_000, 30_000, pacing=KisPacing.paper("notice")))
    notice.submit(OrderRequest("005930", BUY, 10), BUY_AT)
    (ack, fill) = notice.advance(BUY_AT + US)
    assert ack.kind == "ack" and fill.ts == fill.fill.fill_ts + 30_000  # the fill notice comes at once


def test_latency_drawn_from_a_model_is_the_same_for_the_same_seed():
    model = LognormalLatency(median_us=40_000, sigma=0.5)
    a, b = model.sampler(3), model.sampler(3)
    draws = [a.entry() for _ in range(200)]
    assert draws == [b.entry() for _ in range(200)]
    assert 30_000 < float(np.median(draws)) < 55_000 and min(draws) >= model.floor_us
    assert ConstantLatency(5, 7).sampler(0).response() == 7


def test_latency_is_replayed_from_a_live_journals_measured_round_trips(tmp_path):
    from backtest.latency import RecordedLatency
    from serving.journal import Journal

    journal = Journal(tmp_path / "2024-06-03.sqlite")
    for cid, rtt_ms in ((1, 60), (2, 80), (3, 100)):
        journal.sending(cid, T0, OrderRequest("005930", BUY, 1))
        journal.acked(cid, f"000{cid}", T0 + rtt_ms * 1000, T0 + 200_000)
    journal.sending(4, T0, OrderRequest("005930", BUY, 1))  # never acknowledged: not a measurement
    journal.close()
    recorded = RecordedLatency.from_journal(tmp_path / "2024-06-03.sqlite")
    assert sorted(recorded.one_way_us) == [30_000, 40_000, 50_000]  # half of each round trip
    sampler = recorded.sampler(0)
    assert {sampler.entry() for _ in range(60)} == {30_000, 40_000, 50_000}
    with pytest.raises(FileNotFoundError):
        RecordedLatency.from_journal(tmp_path / "none.sqlite")
