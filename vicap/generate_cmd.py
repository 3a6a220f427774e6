"""``vicap generate``: the synthetic market with a progress bar and a closing summary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from market.synthetic.generator import DEFAULT_EDGE, EDGES, INTENSITIES, generate

console = Console()


def run_generate(
    out: Path,
    stocks: int,
    days: int,
    seed: int,
    start: dt.date,
    intensity: str,
    jobs: int,
    ray_address: str | None,
    edge: str = DEFAULT_EDGE,
) -> None:
    if intensity not in INTENSITIES:
        raise typer.BadParameter(f"--vi-intensity must be one of {', '.join(INTENSITIES)}, not {intensity!r}")
    if edge not in EDGES:
        raise typer.BadParameter(f"--edge must be one of {', '.join(EDGES)}, not {edge!r}")
    columns = (
        TextColumn("[bold]generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("stock-days"),
        TextColumn("{task.fields[vis]} VIs"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("generate", total=stocks * days, vis=0)
        seen = {"vis": 0}

        def tick(done) -> None:
            seen["vis"] += done.vi_log.num_rows
            progress.update(task, advance=1, vis=seen["vis"])

        summary = generate(
            out, stocks, days, seed, start, intensity, jobs, ray_address, on_stock_day=tick, edge=edge
        )
    table = Table(title=f"Synthetic KRX market written to {out}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("stocks", summary.stocks),
        ("edge (how predictable a VI's aftermath is)", summary.edge),
        ("trading days", f"{summary.days} ({summary.first_day} .. {summary.last_day})"),
        ("tick rows", f"{summary.ticks:,}"),
        ("order events", f"{summary.order_events:,}"),
        ("VIs", summary.vis),
        ("VIs by type", ", ".join(f"{k} {v}" for k, v in summary.vis_by_type.items())),
        ("VIs by cause", ", ".join(f"{k} {v}" for k, v in summary.vis_by_cause.items())),
        ("seconds", f"{summary.seconds:.1f}"),
        ("ticks per second", f"{summary.ticks / summary.seconds:,.0f}"),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)
