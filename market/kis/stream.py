"""The KIS real-time WebSocket feed as an async iterator: what the recorder records and (later) the
live executor reads.

:meth:`KisStream.events` connects, registers the subscriptions (at most :data:`MAX_REGISTRATIONS`
a session: KIS refuses more), and yields every received text frame as a :class:`Received` (parsed
with :func:`market.kis.formats.parse_frame`; a refused frame is yielded with its reason, never
raised). PINGPONG heartbeats are echoed back as received. When the socket drops (close code 1006
included) it reconnects with exponential backoff and jitter, registers again, and yields a
:class:`Gap` (from, to, reason) for the time the feed was down before the frames that follow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from market import krx
from market.kis import formats as kis

log = logging.getLogger(__name__)
# websockets logs each frame sent at DEBUG: the registrations carry the approval key
logging.getLogger("websockets.client").setLevel(logging.INFO)

MAX_REGISTRATIONS = 40  # real-time registrations (tr_id, stock) per session
GAP = "VICAP_GAP"  # the tr_id of our gap marker, a JSON control frame (kind GAP for the ingest)


@dataclass(frozen=True, slots=True)
class Received:
    """One text frame as received: ``parsed`` is its records or control message, or None with
    ``error`` the reason it was refused."""

    recv_us: int
    text: str
    parsed: kis.Records | kis.Control | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Gap:
    """The feed was down from ``start_us`` to ``end_us`` (receive clock): frames are missing."""

    start_us: int
    end_us: int
    reason: str

    def frame(self) -> str:
        """The gap as a JSON control frame a kis-log recording keeps (``vicap ingest`` counts it
        among the control messages, kind VICAP_GAP)."""
        stamp = [krx.from_us(t).isoformat(timespec="microseconds") for t in (self.start_us, self.end_us)]
        return json.dumps({"header": {"tr_id": GAP, "from": stamp[0], "to": stamp[1], "reason": self.reason}})


@dataclass
class StreamStats:
    frames: int = 0  # data frames
    records: Counter = field(default_factory=Counter)  # per tr_id
    control: Counter = field(default_factory=Counter)  # per kind
    refused: int = 0
    drifted: int = 0  # records read with a width other than the documented one
    reconnects: int = 0
    gaps: int = 0


def subscribe_message(approval_key: SecretStr, tr_id: str, tr_key: str, register: bool = True) -> str:
    return json.dumps(
        {
            "header": {
                "approval_key": approval_key.get_secret_value(),
                "custtype": "P",
                "tr_type": "1" if register else "2",  # 1 등록, 2 해제
                "content-type": "utf-8",
            },
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        }
    )


def watchlist(codes: list[str], tr_ids: tuple[str, ...] = tuple(kis.FIELDS)) -> list[tuple[str, str]]:
    """Every (tr_id, stock) of ``codes``; raises when it needs more than one session allows."""
    subs = [(tr_id, code) for code in codes for tr_id in tr_ids]
    if len(subs) > MAX_REGISTRATIONS:
        raise ValueError(
            f"{len(codes)} stocks x {len(tr_ids)} tr_ids = {len(subs)} registrations; a KIS session "
            f"allows {MAX_REGISTRATIONS} (at most {MAX_REGISTRATIONS // len(tr_ids)} stocks with all of "
            f"{', '.join(tr_ids)})"
        )
    return subs


class KisStream:
    """One WebSocket session. ``approval_key`` is awaited at each (re)connection; ``clock_us``
    stamps receive times (the wall clock live; a replay's clock when recording a replay)."""

    def __init__(
        self,
        url: str,
        approval_key: Callable[[], Awaitable[SecretStr]],
        subscriptions: list[tuple[str, str]],
        *,
        clock_us: Callable[[], int] | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        if len(subscriptions) > MAX_REGISTRATIONS:
            raise ValueError(f"{len(subscriptions)} registrations; a KIS session allows {MAX_REGISTRATIONS}")
        self.url, self.subscriptions = url, list(subscriptions)
        self._approval_key = approval_key
        self._clock_us = clock_us or (lambda: int(time.time() * 1e6))
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._rng = random.Random(seed)
        self.stats = StreamStats()
        self._closing = False
        self._ws: ClientConnection | None = None

    def __repr__(self) -> str:
        return f"KisStream({self.url!r}, {len(self.subscriptions)} registrations)"

    async def close(self) -> None:
        """End :meth:`events` after the frame in hand."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()

    async def _open(self) -> ClientConnection:
        # KIS pings in-band (PINGPONG). On close, frames not yet read stay queued ahead of the
        # server's close reply, so the closing handshake is given a second, not ten.
        ws = await connect(self.url, ping_interval=None, max_size=2**22, close_timeout=1.0)
        try:
            key = await self._approval_key()
            for tr_id, tr_key in self.subscriptions:
                await ws.send(subscribe_message(key, tr_id, tr_key))
        except BaseException:
            await ws.close()
            raise
        return ws

    async def events(self) -> AsyncIterator[Received | Gap]:
        """Frames and gaps until :meth:`close`."""
        down_since: int | None = None
        reason, failures = "", 0
        while not self._closing:
            try:
                self._ws = await self._open()
            except Exception as exc:  # unattended: every failed reconnect is retried
                down_since = down_since or self._clock_us()
                reason = reason or f"connect failed: {type(exc).__name__}"
                failures += 1
                await asyncio.sleep(self._delay(failures))
                continue
            if self._closing:  # closed while connecting
                await self._ws.close()
                break
            if down_since is not None:
                self.stats.reconnects += 1
                self.stats.gaps += 1
                yield Gap(down_since, self._clock_us(), reason)
                down_since, reason, failures = None, "", 0
            try:
                async for message in self._ws:
                    if isinstance(message, str):
                        yield await self._received(message)
            except ConnectionClosed:
                pass
            if self._closing:
                break
            code = self._ws.close_code if self._ws.close_code is not None else 1006
            down_since, reason = self._clock_us(), f"connection closed: code {code}"
            log.warning("KIS feed %s; reconnecting", reason)
            failures += 1
            await asyncio.sleep(self._delay(failures))

    def _delay(self, failures: int) -> float:
        """Exponential backoff with jitter (half fixed, half random): recorders must not reconnect in step."""
        top = min(self._max_backoff_s, self._backoff_s * 2 ** (failures - 1))
        return top / 2 + self._rng.uniform(0, top / 2)

    async def _received(self, text: str) -> Received:
        recv_us = self._clock_us()
        try:
            parsed = kis.parse_frame(text)
        except kis.FrameError as exc:
            self.stats.refused += 1
            return Received(recv_us, text, None, str(exc))
        if isinstance(parsed, kis.Control):
            self.stats.control[parsed.kind] += 1
            if parsed.kind == "PINGPONG" and self._ws is not None:
                await self._ws.send(text)  # the heartbeat goes back as it came
        else:
            self.stats.frames += 1
            self.stats.records[parsed.tr_id] += len(parsed.records)
            if parsed.drift:
                self.stats.drifted += len(parsed.records)
        return Received(recv_us, text, parsed)
