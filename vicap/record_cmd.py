"""``vicap record``: a watchlist's KIS real-time feed to a kis-log folder (market/kis/recorder.py),
with a live progress line and a summary table. The KIS credentials come from Settings (the
environment) and travel as :class:`~market.kis.client.KisConfig`; nothing secret is printed."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from market import krx
from market.kis.client import KisConfig, KisRest
from market.kis.ingest import STOCKS_FILE
from market.kis.recorder import RecorderConfig, RecordSummary, record
from vicap.settings import Settings

console = Console()


def kis_config(settings: Settings) -> KisConfig:
    """The client's config from Settings; raises ValueError naming the missing variable."""
    missing = [n for n in ("kis_app_key", "kis_app_secret") if getattr(settings, n) is None]
    if missing:
        raise ValueError("set " + " and ".join(f"VICAP_{n.upper()}" for n in missing) + " (KIS credentials)")
    return KisConfig(
        app_key=settings.kis_app_key,
        app_secret=settings.kis_app_secret,
        account=settings.kis_account,
        paper=settings.kis_paper,
        rest_url=settings.kis_rest_url,
        ws_url=settings.kis_ws_url,
        token_cache=settings.kis_token_cache,
    )


def stop_time(until: dt.time | None, duration_s: float | None, now_us: int) -> int:
    """The stop instant (µs): ``until`` today in Seoul (tomorrow if passed), else after ``duration_s``."""
    if until is not None:
        day = krx.from_us(now_us).date()
        stop = krx.at_seoul(day, until)
        return stop if stop > now_us else krx.at_seoul(day + dt.timedelta(days=1), until)
    if duration_s is None:
        raise ValueError("give --until or --duration")
    return now_us + int(duration_s * 1e6)


def summary_table(summary: RecordSummary, out: Path) -> Table:
    s = summary.stream
    t = Table(title=f"KIS feed recorded to {out}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows: list[tuple[str, object]] = [
        ("lines written", summary.lines),
        ("data frames", s.frames),
        *((f"  records {tr_id}", n) for tr_id, n in sorted(s.records.items())),
        *((f"  control {kind}", n) for kind, n in sorted(s.control.items())),
        ("frames refused (kept in the recording)", s.refused),
        ("records with a drifted width", s.drifted),
        ("reconnects", s.reconnects),
        ("gaps", len(summary.gaps)),
        *((f"  gap {a} - {b}", reason) for a, b, reason in summary.gaps),
        ("VI-status polls (failed)", f"{summary.vi_polls} ({summary.vi_poll_errors})"),
        ("VI-status rows", summary.vi_rows),
        ("files", ", ".join(summary.files)),
    ]
    for label, value in rows:
        t.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    return t


def _progress(summary: RecordSummary) -> str:
    s = summary.stream
    return (
        f"frames {s.frames:,}  records {sum(s.records.values()):,}  reconnects {s.reconnects}  "
        f"gaps {len(summary.gaps)}  drifted {s.drifted:,}  refused {s.refused}  VI rows {summary.vi_rows}"
    )


async def record_with_progress(
    kis: KisConfig,
    config: RecorderConfig,
    *,
    clock_us: Callable[[], int] | None = None,
    market_now_us: Callable[[], int] | None = None,
    backoff_s: float = 0.5,
) -> RecordSummary:
    """Record with a live progress line; the summary table after."""
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        async with KisRest(kis, market_now_us=market_now_us or clock_us) as rest:
            summary = await record(
                config,
                rest,
                kis.ws,
                clock_us=clock_us,
                on_progress=lambda s: live.update(_progress(s)),
                backoff_s=backoff_s,
            )
    console.print(summary_table(summary, config.out))
    return summary


def run_record(
    settings: Settings,
    out: Path,
    codes: list[str],
    stocks: Path | None,
    until: dt.time | None,
    duration_s: float | None,
    vi_poll_s: float,
) -> int:
    try:
        kis = kis_config(settings)
        stock_rows = _stock_rows(stocks, out, codes)
        stop = stop_time(until, duration_s, krx.epoch_us(dt.datetime.now(krx.SEOUL)))
        config = RecorderConfig(
            out=out, codes=codes, stop_us=stop, vi_poll_s=vi_poll_s, stock_rows=stock_rows
        )
        asyncio.run(record_with_progress(kis, config))
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return 0


def _stock_rows(stocks: Path | None, out: Path, codes: list[str]) -> list[str]:
    """The stocks.csv lines of ``codes`` from ``stocks`` (as ``vicap kis-export`` writes it), or
    nothing when ``out`` already has one."""
    if stocks is None:
        if (out / STOCKS_FILE).exists():
            return []
        raise ValueError(f"give --stocks (a {STOCKS_FILE}: stock_code,stock_name,market,...) for the ingest")
    lines = stocks.read_text(encoding="utf-8").splitlines()
    mine = [line for line in lines[1:] if line.split(",", 1)[0] in codes]
    absent = sorted(set(codes) - {line.split(",", 1)[0] for line in mine})
    if absent:
        raise ValueError(f"{stocks}: no row for {', '.join(absent)}")
    return [lines[0], *mine]
