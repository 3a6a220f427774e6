"""``vicap validate``: Great Expectations over a tick dataset; the verdict beside the data, Data
Docs and the readable report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vicap.settings import get_settings

console = Console()


def run_validate(dataset: Path, jobs: int = 1, ray_address: str | None = None) -> int:
    if not (dataset / "instruments.parquet").exists() or not (dataset / "ticks").is_dir():
        console.print(f"[red]{dataset}: needs ticks/ and instruments.parquet[/]")
        return 2
    from market.krx.dataset import tick_partitions
    from validation.runner import validate_dataset

    paths = get_settings().paths
    columns = (
        TextColumn("[bold]validating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("validate", total=len(tick_partitions(dataset)))
        report = validate_dataset(
            dataset,
            paths.reports / "validation",
            on_file=lambda _: progress.advance(task),
            jobs=jobs,
            ray_address=ray_address,
        )
    d = report.on_disk
    t = Table(title=f"Validation of {dataset} (Great Expectations; counted on disk)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for label, value in [
        ("partitions", report.files),
        ("unreadable partitions (set aside, left as they are)", report.unreadable_files),
        ("rows in", f"{d['rows_in']:,}"),
        ("rows accepted", f"{d['accepted']:,}"),
        ("rows quarantined", f"{d['quarantined']:,}"),
        ("in = accepted + quarantined", report.balanced),
    ]:
        t.add_row(label, str(value))
    for reason, count in report.reasons.most_common():
        t.add_row(f"  quarantined: {reason}", f"{count:,}")
    console.print(t)
    if report.gaps:
        g = Table(title=f"Gaps in cum_volume (dropped trades): {len(report.gapped)} partition(s), rows kept")
        for column in ("partition", "stock", "at", "shares missing"):
            g.add_column(column, justify="right" if column == "shares missing" else "left")
        for gap in report.gaps[:20]:
            g.add_row(gap["partition"], gap["stock_code"], gap["timestamp"], f"{gap['missing_shares']:,}")
        if len(report.gaps) > 20:
            g.add_row(f"... {len(report.gaps) - 20} more", "", "", "")
        console.print(g)
    for partition, n in sorted(report.out_of_order.items()):
        console.print(f"[yellow]{partition}: {n} row(s) out of time order (kept)[/]")
    for c in report.critical:
        console.print(f"[red]critical: {c}[/]")
    console.print(f"report: {report.html}")
    console.print(f"Data Docs: {report.docs}")
    if report.rows_quarantined:
        console.print(f"quarantine: {dataset / 'quarantine' / 'ticks'}")
    return 0 if report.ok else 1
