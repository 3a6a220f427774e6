"""``vicap ingest``: vendor files through a column mapping, then validation."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
FORMATS = {"parquet": ".parquet", "csv": ".csv"}


def run_ingest(src: Path, fmt: str, mapping_path: Path | None, out: Path, instruments: Path | None) -> int:
    from market.ingest import IngestError, Mapping, ingest
    from vicap.validate_cmd import run_validate

    if fmt == "kis-log":
        console.print("[red]--format kis-log: KIS WebSocket recordings are not supported yet (issue 4)[/]")
        return 2
    if fmt not in FORMATS:
        console.print(f"[red]--format must be one of parquet, csv, kis-log, not {fmt!r}[/]")
        return 2
    if mapping_path is None:
        console.print("[red]--mapping FILE.yaml is needed for parquet and csv (see market/mappings/)[/]")
        return 2
    sources = sorted(src.glob(f"*{FORMATS[fmt]}")) if src.is_dir() else [src]
    if not sources or not all(p.exists() for p in sources):
        console.print(f"[red]{src}: no {fmt} files[/]")
        return 2
    try:
        report = ingest(sources, Mapping.load(mapping_path), out, instruments)
    except IngestError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    t = Table(title=f"Ingested {len(sources)} file(s) into {out}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for label, value in [
        ("rows in", report.rows_in),
        ("accepted", report.rows_accepted),
        ("quarantined", report.rows_quarantined),
        ("in = accepted + quarantined", report.rows_in == report.rows_accepted + report.rows_quarantined),
        ("stock-days written", report.stock_days),
    ]:
        t.add_row(
            label, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
    for reason, count in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        t.add_row(f"  quarantined: {reason}", f"{count:,}")
    console.print(t)
    return run_validate(out)
