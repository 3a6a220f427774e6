"""The KIS client against the loopback fake KIS: the faults the real service shows (rate limit,
token limit and expiry, dropped sockets, drifted and batched frames, lost order replies) and the
rule that no secret is ever written."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import stat

import pytest
from pydantic import SecretStr

from market.kis import formats as kis
from market.kis.client import KisConfig, KisError, KisRest
from market.kis.orders import KisOrders
from market.kis.recorder import RecorderConfig, record
from market.kis.stream import MAX_REGISTRATIONS, Gap, KisStream, watchlist
from serving.fake_kis import FakeKis
from vicap.record_cmd import summary_table

KEY, SECRET, ACCOUNT = "PSkey-4f1c9e2b7a55d0c3", "secret-9a8b7c6d5e4f3a2b1c0d", "73310412-01"


class FakeClock:
    """Wall seconds that a sleep moves forward at once: minutes of token rules in no time."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
        await asyncio.sleep(0)


def _fake(vi_day, feed, **options) -> FakeKis:
    return FakeKis(vi_day.raw, feed, app_key=KEY, app_secret=SECRET, account=ACCOUNT, **options)


def _client(fake: FakeKis, clock: FakeClock | None = None, **options) -> KisRest:
    config = KisConfig(
        app_key=SecretStr(KEY),
        app_secret=SecretStr(SECRET),
        account=SecretStr(ACCOUNT),
        rest_url=fake.rest_url,
        ws_url=fake.ws_url,
        min_interval_s=0.0,
        backoff_s=0.01,
        **options,
    )
    if clock is None:
        return KisRest(config, market_now_us=fake.now_us)
    return KisRest(config, sleep=clock.sleep, now=clock.now, market_now_us=fake.now_us)


def test_rate_limited_calls_back_off_and_succeed(vi_day, vi_feed):
    clock = FakeClock()
    with _fake(vi_day, vi_feed, clock=clock.now) as fake:

        async def main():
            async with _client(fake, clock) as rest:
                await rest.token()
                fake.rate_limit(3)  # EGW00201, HTTP 500, three times
                return await rest.vi_status()

        assert asyncio.run(main()) == []  # no VI yet at the replay's start
        assert fake.stats["rate_limited"] == 3


def test_a_second_token_within_a_minute_waits_out_the_minute(vi_day, vi_feed):
    """EGW00133: a second client (no shared cache) asks within the minute, waits, and gets one."""
    clock = FakeClock()
    with _fake(vi_day, vi_feed, clock=clock.now) as fake:

        async def main():
            async with _client(fake, clock) as first, _client(fake, clock) as second:
                a = await first.token()
                b = await second.token()
                return a, b

        a, b = asyncio.run(main())
        assert a.get_secret_value() != b.get_secret_value() and fake.stats["tokens"] == 2
        assert clock.slept >= 60


def test_an_expired_token_is_renewed_and_the_call_retried_once(vi_day, vi_feed):
    clock = FakeClock()
    with _fake(vi_day, vi_feed, clock=clock.now) as fake:

        async def main():
            async with _client(fake, clock) as rest:
                await rest.vi_status()
                fake.expire_tokens()  # the next call gets EGW00123
                clock.t += 3600
                return await rest.vi_status()

        assert asyncio.run(main()) == [] and fake.stats["tokens"] == 2


def test_the_token_is_cached_on_disk_for_the_owner_only(vi_day, vi_feed, tmp_path):
    clock = FakeClock()
    with _fake(vi_day, vi_feed, clock=clock.now) as fake:

        async def main():
            for _ in range(2):  # two processes, one after the other
                async with _client(fake, clock, token_cache=tmp_path) as rest:
                    await rest.vi_status()

        asyncio.run(main())
        assert fake.stats["tokens"] == 1
    (cache,) = tmp_path.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and KEY not in cache.name


def test_vi_status_pages_while_tr_cont_says_more(vi_day, vi_feed):
    """A busy day (723 VIs on 2023-07-26): 65 rows come in three pages of 30."""
    code, vi, release = vi_feed.vis[0]
    many = [(code, vi | {"ts": vi["ts"] - k * 1_000_000}, release) for k in range(65)]
    with _fake(vi_day, dataclasses.replace(vi_feed, vis=many), page_size=30) as fake:
        fake.jump_to(vi_feed.frames[-1][0])  # past every VI

        async def main():
            async with _client(fake) as rest:
                return await rest.vi_status()

        rows = asyncio.run(main())
    assert len(rows) == 65 and len({r["cntg_vi_hour"] for r in rows}) == 65


def test_an_order_whose_reply_is_lost_is_found_not_sent_twice(vi_day, vi_feed):
    with _fake(vi_day, vi_feed) as fake:

        async def main():
            async with _client(fake, order_timeout_s=0.3) as rest:
                orders = KisOrders(rest)
                fake.delay_next_order_reply(1.5)  # placed at KIS, but the reply comes too late
                ack = await orders.order_cash(vi_day.code, 1, 10, client_id="vi-entry-1")
                again = await orders.order_cash(vi_day.code, 1, 10, client_id="vi-entry-1")
                other = await orders.order_cash(vi_day.code, 1, 10, client_id="vi-entry-2")
                return ack, again, other, await orders.daily_orders()

        ack, again, other, orders = asyncio.run(main())
    assert ack.recovered and again == ack and fake.orders == 2
    assert other.odno != ack.odno and not other.recovered
    assert {o.odno: o.filled_qty for o in orders} == {ack.odno: 10, other.odno: 10}  # market orders filled


def test_kis_errors_name_the_call_and_code(vi_day, vi_feed):
    with _fake(vi_day, vi_feed) as fake:

        async def main() -> str:
            config = KisConfig(
                app_key=SecretStr("wrong"), app_secret=SecretStr(SECRET), rest_url=fake.rest_url
            )
            async with KisRest(config) as rest:
                try:
                    await rest.token()
                except KisError as exc:
                    return str(exc)
            return ""

        assert asyncio.run(main()).startswith("token: HTTP 403 EGW00103")


def test_one_session_registers_at_most_40():
    assert len(watchlist([f"{i:06d}" for i in range(10)])) == MAX_REGISTRATIONS
    with pytest.raises(ValueError, match="44 registrations; a KIS session allows 40"):
        watchlist([f"{i:06d}" for i in range(11)])


def _stream(fake: FakeKis, codes: list[str], frames: int = 0, on_frame=None) -> tuple[list, KisStream]:
    """The first ``frames`` events of a stream on ``fake`` (0: all of the replay)."""

    async def main():
        async with _client(fake) as rest:
            stream = KisStream(
                fake.ws_url, rest.approval_key, watchlist(codes), clock_us=fake.now_us, backoff_s=0.05
            )

            async def stop_when_done():
                while not fake.done:
                    await asyncio.sleep(0.05)
                await stream.close()

            stopper = asyncio.create_task(stop_when_done())
            got = []
            async for event in stream.events():
                got.append(event)
                if on_frame:
                    on_frame(len(got))
                if len(got) == frames:
                    await stream.close()
            stopper.cancel()
            return got, stream

    return asyncio.run(main())


def test_drifted_and_batched_frames_are_read_and_counted(vi_day, vi_feed):
    with _fake(vi_day, vi_feed, speed=200) as fake:
        events, stream = _stream(fake, [vi_day.code], 400, lambda n: n == 200 and fake.drift(3))
    records = [e.parsed for e in events if isinstance(e.parsed, kis.Records)]
    assert stream.stats.refused == 0 and stream.stats.drifted > 0
    assert any(r.drift == 3 for r in records) and any(len(r.records) > 1 for r in records)  # batched
    assert sum(stream.stats.records.values()) == sum(len(r.records) for r in records) > len(records)


def test_pingpong_is_echoed_and_a_drop_reconnects_with_a_gap(vi_day, vi_feed):
    with _fake(vi_day, vi_feed, speed=200) as fake:
        events, stream = _stream(fake, [vi_day.code], 0, lambda n: n == 100 and fake.drop())
        pongs = fake.stats["pongs"]
    gaps = [e for e in events if isinstance(e, Gap)]
    assert (
        len(gaps) == 1
        and gaps[0].reason == "connection closed: code 1006"
        and gaps[0].end_us > gaps[0].start_us
    )
    assert stream.stats.reconnects == 1 and stream.stats.control["SUBSCRIBE SUCCESS"] == 8
    assert stream.stats.control["PINGPONG"] >= 1 and pongs == stream.stats.control["PINGPONG"]


def test_no_secret_is_ever_written(vi_day, vi_feed, tmp_path, caplog, capsys):
    """Logs, the recording, the report, reprs and error messages hold no key, secret, account,
    token or approval key; only the token cache holds the token."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    with _fake(vi_day, vi_feed, speed=200, clock=clock.now) as fake:

        async def main():
            async with _client(fake, clock, token_cache=tmp_path / "cache") as rest:
                fake.rate_limit(1)
                config = RecorderConfig(
                    out=tmp_path / "rec",
                    codes=[vi_day.code],
                    stop_us=fake.begin_us + 60_000_000,
                    vi_poll_s=0.2,
                )
                summary = await record(config, rest, fake.ws_url, clock_us=fake.now_us, backoff_s=0.05)
                fake.expire_tokens()
                orders = KisOrders(rest)
                await orders.order_cash(vi_day.code, 1, 1)
                try:
                    await orders.order_cash("999999", 1, 1)
                except KisError as exc:
                    errors.append(str(exc))
                return summary, repr(rest), repr(rest.config), repr(orders)

        errors: list[str] = []
        summary, *reprs = asyncio.run(main())
        secrets = [
            KEY,
            SECRET,
            ACCOUNT,
            ACCOUNT.split("-")[0],
            *fake._tokens,
            *fake._expired,
            *fake._approvals,
        ]
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(summary_table(summary, tmp_path / "rec"))
    written = [caplog.text, capsys.readouterr().out, console.export_text(), *reprs, *errors]
    written += [p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "rec").iterdir()]
    assert summary.stream.frames > 100 and errors and len(secrets) >= 7
    for text in written:
        for secret in secrets:
            assert secret not in text
    cache = json.loads(next((tmp_path / "cache").iterdir()).read_text())
    assert cache["access_token"] in fake._tokens | fake._expired  # the one place the token lives
