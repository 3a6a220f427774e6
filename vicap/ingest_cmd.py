"""``vicap ingest``: vendor files through a column mapping, or KIS real-time recordings; then
validation."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()
FORMATS = {"parquet": ".parquet", "csv": ".csv"}


def _print_counts(title: str, rows: list[tuple[str, object]], reasons: dict[str, int]) -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    for label, value in rows:
        t.add_row(
            label, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        t.add_row(f"  quarantined: {reason}", f"{count:,}")
    console.print(t)


def _run_kis(src: Path, out: Path, stocks: Path | None) -> int:
    from market.kis.ingest import ingest_kis

    report = ingest_kis(src, out, stocks)
    control = sum(report.control.values())
    _print_counts(
        f"Ingested {report.files} KIS recording(s) from {src} into {out}",
        [
            ("lines in", report.lines),
            ("data frames", report.data_frames),
            ("control messages", control),
            *((f"  {kind}", n) for kind, n in sorted(report.control.items())),
            ("lines quarantined", report.lines_quarantined),
            (
                "lines: in = data + control + quarantined",
                report.lines == report.data_frames + control + report.lines_quarantined,
            ),
            ("records in data frames", report.records),
            ("records accepted", report.records_accepted),
            ("records quarantined", report.records_quarantined),
            (
                "records: in = accepted + quarantined",
                report.records == report.records_accepted + report.records_quarantined,
            ),
            (
                "VI-status rows in / accepted / quarantined",
                f"{report.vi_records} / {report.vi_accepted} / {report.vi_quarantined}",
            ),
            *((f"  read with a drifted width: {k}", n) for k, n in sorted(report.drift.items())),
            *(
                (f"  code not in the KIS tables: {' '.join(k)}", n)
                for k, n in sorted(report.unknown_codes.items())
            ),
            ("records while halted (TRHT_YN Y)", report.halted_records),
            ("tick rows written", report.rows_written),
            ("records stamped with a later clock", report.clock_held),
            ("stock-days written", report.stock_days),
        ],
        report.reasons,
    )
    return 0


def _run_vendor(src: Path, fmt: str, mapping_paths: list[Path], out: Path, instruments: Path | None) -> int:
    from market.vendor.ingest import Mapping, ingest, load_layout

    mappings = load_layout(mapping_paths) if mapping_paths else [Mapping.own_schema()]
    sources = sorted(src.glob(f"*{FORMATS[fmt]}")) if src.is_dir() else [src]
    sources = [p for p in sources if instruments is None or p.resolve() != instruments.resolve()]
    if not sources:
        console.print(f"[red]{src}: no {fmt} files[/]")
        return 2
    report = ingest(sources, mappings, out, instruments)
    _print_counts(
        f"Ingested {len(sources)} file(s) ({', '.join(m.name for m in mappings)}) into {out}",
        [
            ("rows in", report.rows_in),
            ("accepted", report.rows_accepted),
            ("quarantined", report.rows_quarantined),
            ("in = accepted + quarantined", report.rows_in == report.rows_accepted + report.rows_quarantined),
            ("VI event rows / VI log rows", f"{report.vi_events} / {report.vi_log_rows}"),
            *(
                (f"investor net changes held to the next publication: {k}", n)
                for k, n in sorted(report.investor_changes_held.items())
                if n
            ),
            ("stock-days written", report.stock_days),
        ],
        report.reasons,
    )
    return 0


def run_ingest(
    src: Path, fmt: str, mapping_paths: list[Path] | None, out: Path, instruments: Path | None
) -> int:
    from market.krx.dataset import IngestError
    from vicap.validate_cmd import run_validate

    if fmt != "kis-log" and fmt not in FORMATS:
        console.print(f"[red]--format must be one of parquet, csv, kis-log, not {fmt!r}[/]")
        return 2
    if not src.exists():
        console.print(f"[red]{src}: no such file or folder[/]")
        return 2
    try:
        code = (
            _run_kis(src, out, instruments)
            if fmt == "kis-log"
            else _run_vendor(src, fmt, mapping_paths or [], out, instruments)
        )
    except IngestError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    return code or run_validate(out, os.cpu_count() or 1)
