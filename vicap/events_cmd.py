"""``vicap events``: VI detection over a dataset and its agreement with the exchange's log."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from market.events.panels import write_panels
from market.events.table import write_events
from market.krx.dataset import SUMMARY_FILE, StaleVerdict, accepted_partitions, has_vi_flags, read_verdict
from vicap.settings import get_settings

console = Console()


def run_events(
    dataset: Path, out: Path, use_flags: bool = True, before_s: int = 30, after_s: int = 30
) -> int:
    if not (dataset / "instruments.parquet").exists() or not (dataset / "ticks").is_dir():
        console.print(
            f"[red]{dataset}: needs ticks/ and instruments.parquet (see `vicap generate` / `vicap ingest`)[/]"
        )
        return 2
    try:
        accepted_partitions(dataset)  # refuses a verdict the files no longer match
    except StaleVerdict as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    if read_verdict(dataset) is None:
        console.print(f"[yellow]{dataset} is not validated: every row is read (`vicap validate` first)[/]")
    if use_flags and not has_vi_flags(dataset):
        console.print(
            f"{dataset} carries no VI flags (its {SUMMARY_FILE} says so): "
            "detecting VIs by the KRX rules alone"
        )
        use_flags = False
    t0 = time.perf_counter()
    with console.status("detecting VIs ..."):
        table, agree = write_events(dataset, out, use_flags)
    seconds = time.perf_counter() - t0
    mode = "exchange flags" if use_flags else "KRX rules only"
    console.print(
        f"{table.num_rows} VI events ({mode}) written to {out / 'events.parquet'} in {seconds:.1f} s"
    )
    counts = table.group_by("vi_type").aggregate([("event_id", "count")]).to_pylist()
    console.print("by type: " + ", ".join(f"{r['vi_type']} {r['event_id_count']}" for r in counts))
    t1 = time.perf_counter()
    with console.status("building 1-second panels ..."):
        panels = write_panels(dataset, out, before_s, after_s)
    console.print(
        f"{panels.num_rows:,} panel seconds x {panels.num_columns} columns written to "
        f"{out / 'windows.parquet'} in {time.perf_counter() - t1:.1f} s"
    )
    from validation.runner import validate_events

    with console.status("validating events and panels (Great Expectations) ..."):
        failed = validate_events(out, get_settings().paths.reports / "validation")
    for f in failed:
        console.print(f"[red]failed: {f}[/]")
    if not failed:
        console.print("events and panels pass their expectation suites (Data Docs updated)")
    status = 1 if failed else 0
    if agree is None:
        console.print("no vi_log.parquet beside the ticks: no agreement to measure")
        return status
    t = Table(title="Agreement with vi_log.parquet")
    for col in ("detected", "logged", "matched", "precision", "recall", "same type", "same auction price"):
        t.add_column(col, justify="right")
    t.add_row(
        str(agree.detected),
        str(agree.logged),
        str(agree.matched),
        f"{agree.precision:.2%}",
        f"{agree.recall:.2%}",
        f"{agree.same_type}/{agree.matched}",
        f"{agree.same_auction_price}/{agree.priced}" if agree.priced else "not in the log",
    )
    console.print(t)
    return status
