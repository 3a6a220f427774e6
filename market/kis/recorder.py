"""`vicap record`: a watchlist's KIS real-time feed saved as a kis-log recording, the format
``vicap ingest --format kis-log`` reads (market/kis/ingest.py) and the exporter writes.

The folder holds ``kis-YYYYMMDD.jsonl`` (one ``{"recv_ts", "frame"}`` line per received text frame,
control frames included, the day by the receive time in Seoul; a day is gzipped to ``.jsonl.gz``
once the next begins), ``vi_status-YYYYMMDD.json`` (every VI-status row polled that day, in the
REST reply's shape) and ``stocks.csv``. When the feed drops, the stream reconnects and a gap
marker line (a JSON control frame, tr_id VICAP_GAP, with from, to and reason) says what is
missing. Meant to run unattended through a day: REST errors while polling are logged, not fatal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from market import krx
from market.kis import formats as kis
from market.kis.client import KisError, KisRest
from market.kis.export import recording_line, vi_status_response
from market.kis.ingest import STOCKS_FILE
from market.kis.stream import Gap, KisStream, StreamStats, watchlist

log = logging.getLogger(__name__)


class RecorderConfig(BaseModel):
    """What to record, where, and until when (``stop_us`` on the recorder's clock)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path
    codes: list[str] = Field(min_length=1)
    tr_ids: tuple[str, ...] = tuple(kis.FIELDS)
    stop_us: int
    vi_poll_s: float = Field(60.0, gt=0, description="wall seconds between VI-status polls")
    stock_rows: list[str] = Field(default_factory=list, description="stocks.csv lines, header first")


@dataclass
class RecordSummary:
    files: list[str] = field(default_factory=list)
    lines: int = 0
    stream: StreamStats = field(default_factory=StreamStats)
    gaps: list[tuple[str, str, str]] = field(default_factory=list)
    vi_polls: int = 0
    vi_poll_errors: int = 0
    vi_rows: int = 0


class DailyLog:
    """Appends lines to the receive day's ``kis-YYYYMMDD.jsonl``; a new day gzips the days
    before it (closed: nothing more arrives for them)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.day: dt.date | None = None
        self._fh = None
        self.files: list[str] = []

    def write(self, recv_us: int, frame: str) -> None:
        day = krx.from_us(recv_us).date()
        if day != self.day:
            self._rotate(day)
        self._fh.write(recording_line(recv_us, frame) + "\n")  # type: ignore[union-attr]

    def _rotate(self, day: dt.date) -> None:
        self.close()
        self.day = day
        path = self.out / f"kis-{day:%Y%m%d}.jsonl"
        for old in sorted(self.out.glob("kis-*.jsonl")):
            if old.name < path.name:
                compress(old)
        self._fh = path.open("a", encoding="utf-8")
        if path.name not in self.files:
            self.files.append(path.name)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def compress(path: Path) -> Path:
    """``path`` gzipped beside itself (``.gz``), the plain file removed once the copy is whole."""
    target = path.with_name(path.name + ".gz")
    tmp = target.with_name(target.name + ".tmp")
    with path.open("rb") as src, gzip.open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    tmp.replace(target)
    path.unlink()
    return target


class VIStatusStore:
    """VI-status rows by day, merged across polls (the REST call lists only the latest 30: a
    row seen once is kept; a later poll updates its release time)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows: dict[tuple[str, str, str], dict] = {}  # (day, trigger time, stock) -> row

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self.rows[(row["bsop_date"], row["cntg_vi_hour"], row["mksc_shrn_iscd"])] = row

    def save(self) -> None:
        for day in sorted({k[0] for k in self.rows}):
            rows = [r for k, r in sorted(self.rows.items(), reverse=True) if k[0] == day]  # newest first
            path = self.out / f"vi_status-{day}.json"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(
                json.dumps(vi_status_response(rows), ensure_ascii=False, indent=1), encoding="utf-8"
            )
            tmp.replace(path)


async def record(
    config: RecorderConfig,
    rest: KisRest,
    ws_url: str,
    *,
    clock_us: Callable[[], int] | None = None,
    on_progress: Callable[[RecordSummary], None] | None = None,
    backoff_s: float = 0.5,
) -> RecordSummary:
    """Record until ``config.stop_us``; ``clock_us`` stamps receive times (wall clock live)."""
    clock = clock_us or (lambda: int(time.time() * 1e6))
    config.out.mkdir(parents=True, exist_ok=True)
    if config.stock_rows:
        (config.out / STOCKS_FILE).write_text("\n".join(config.stock_rows) + "\n", encoding="utf-8")
    stream = KisStream(
        ws_url, rest.approval_key, watchlist(config.codes, config.tr_ids), clock_us=clock, backoff_s=backoff_s
    )
    daily, vi = DailyLog(config.out), VIStatusStore(config.out)
    summary = RecordSummary(stream=stream.stats)

    async def stop_when_due() -> None:
        while clock() < config.stop_us:
            await asyncio.sleep(0.05)
        await stream.close()

    async def poll_vi_status() -> None:
        while True:
            await _poll(rest, vi, clock(), summary)
            await asyncio.sleep(config.vi_poll_s)

    tasks = [asyncio.create_task(stop_when_due()), asyncio.create_task(poll_vi_status())]
    last_progress = 0.0
    try:
        async for event in stream.events():
            if isinstance(event, Gap):
                start, end = (str(krx.from_us(t).time()) for t in (event.start_us, event.end_us))
                summary.gaps.append((start, end, event.reason))
                daily.write(event.end_us, event.frame())
            else:
                daily.write(event.recv_us, event.text)
            summary.lines += 1
            if on_progress and time.monotonic() - last_progress > 0.25:
                daily.flush()
                on_progress(summary)
                last_progress = time.monotonic()
    finally:
        for task in tasks:
            task.cancel()
        daily.close()
    await _poll(rest, vi, clock(), summary)  # the VIs up to the end
    summary.files = daily.files
    if on_progress:
        on_progress(summary)
    return summary


async def _poll(rest: KisRest, store: VIStatusStore, now_us: int, summary: RecordSummary) -> None:
    try:
        rows = await rest.vi_status(krx.from_us(now_us).date())
    except (
        KisError,
        httpx.HTTPError,
        OSError,
    ) as exc:  # unattended: a failed poll is logged, the next one retries
        summary.vi_poll_errors += 1
        log.warning("VI-status poll failed: %s", exc)
        return
    summary.vi_polls += 1
    store.add(rows)
    store.save()
    summary.vi_rows = len(store.rows)
