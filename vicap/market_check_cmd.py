"""``vicap market-check``: the realism table in the terminal and as an HTML report."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from market.synthetic.realism import measure
from market.synthetic.report import write_report
from vicap.settings import get_settings

console = Console()


def run_market_check(dataset: Path) -> int:
    for needed in ("instruments.parquet", "vi_log.parquet", "ticks"):
        if not (dataset / needed).exists():
            console.print(
                f"[red]{dataset}: no {needed} here; is this a dataset written by `vicap generate`?[/]"
            )
            return 2
    result = measure(dataset)
    table = Table(title=f"Market realism of {dataset}")
    for col in ("measure", "value", "expected", "status"):
        table.add_column(col)
    for f in result.facts:
        status = (
            "[green]ok[/]" if f.ok else ("[red bold]BROKEN[/]" if f.invariant else "[yellow]out of range[/]")
        )
        table.add_row(f.name + (" (invariant)" if f.invariant else ""), f"{f.value:,.4g}", f.expected, status)
    console.print(table)
    for name, df in result.tables.items():
        console.print(f"[bold]{name.replace('_', ' ')}[/]")
        console.print(df.to_string(index=False))
    path = write_report(result, dataset, get_settings().paths.reports / "market")
    console.print(f"report: {path}")
    if not result.invariants_ok:
        console.print("[red]an invariant is broken[/]")
        return 1
    return 0
