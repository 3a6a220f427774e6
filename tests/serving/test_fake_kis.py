"""The loopback fake KIS on its own: registration replies, VI status as of the replay clock, and
orders filled by the backtest execution model."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from market.kis import formats as kis
from market.kis.orders import KisOrders
from market.kis.stream import subscribe_message
from serving.fake_kis import drifted
from tests.market.test_kis_client import _client, _fake


def test_registrations_are_answered_as_kis_answers_them(vi_day, vi_feed):
    with _fake(vi_day, vi_feed) as fake:

        async def main() -> list[str]:
            async with _client(fake) as rest:
                key = await rest.approval_key()
            async with connect(fake.ws_url) as ws:
                for i in range(41):
                    await ws.send(subscribe_message(key, kis.TRADES, f"{i:06d}"))
                await ws.send(subscribe_message(key, kis.TRADES, "000000"))
                replies = [json.loads(await ws.recv())["body"]["msg_cd"] for _ in range(42)]
            async with connect(fake.ws_url) as ws:
                await ws.send(subscribe_message(key.__class__("not-a-key"), kis.TRADES, "000000"))
                replies.append(json.loads(await ws.recv())["body"]["msg_cd"])
            return replies

        replies = asyncio.run(main())
    assert replies == ["OPSP0000"] * 40 + ["OPSP0008", "OPSP0002", "OPSP0011"]


def test_vi_status_follows_the_replay_clock(vi_day, vi_feed):
    with _fake(vi_day, vi_feed) as fake:

        async def main():
            async with _client(fake) as rest:
                before = await rest.vi_status()
                fake.jump_to(vi_feed.frames[-1][0])
                return before, await rest.vi_status()

        before, after = asyncio.run(main())
    assert before == [] and [r["mksc_shrn_iscd"] for r in after] == [vi_day.code]
    assert after[0]["vi_cls_code"] == "N" and after[0]["vi_cncl_hour"]  # released by the window's end


def test_a_resting_limit_order_fills_as_the_replay_clock_passes(vi_day, vi_feed):
    """A buy limit a price step above the window's lowest trade rests, then a trade through it
    fills it."""
    trades = [
        r
        for _, tr_id, _, text in vi_feed.frames
        if tr_id == kis.TRADES
        for r in kis.parse_frame(text).records
    ]
    low = sorted({int(r["STCK_PRPR"]) for r in trades})[1]
    with _fake(vi_day, vi_feed) as fake:

        async def main():
            async with _client(fake) as rest:
                orders = KisOrders(rest)
                ack = await orders.order_cash(vi_day.code, 1, 1, price=low)
                first = {o.odno: o.filled_qty for o in await orders.daily_orders()}
                fake.jump_to(vi_feed.frames[-1][0])
                return ack, first, {o.odno: o for o in await orders.daily_orders()}

        ack, first, later = asyncio.run(main())
    assert first == {ack.odno: 0}
    assert later[ack.odno].filled_qty == 1 and later[ack.odno].avg_price <= low


def test_drift_appends_fields_to_every_record():
    frame = kis.format_frame(kis.PROGRAM, [{"MKSC_SHRN_ISCD": "005930"}, {"MKSC_SHRN_ISCD": "000660"}])
    parsed = kis.parse_frame(drifted(frame, 2))
    assert parsed.drift == 2 and [r["MKSC_SHRN_ISCD"] for r in parsed.records] == ["005930", "000660"]
