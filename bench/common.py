"""Shared plumbing of the benchmarks: a results table printed with rich and written as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def report_dir() -> Path:
    from vicap.settings import get_settings

    path = get_settings().paths.bench_reports
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(name: str, title: str, rows: list[dict], notes: dict | None = None) -> Path:
    """Print ``rows`` (dicts with the same keys) and write them with machine facts to JSON."""
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="right" if isinstance(rows[0][key], int | float) else "left")
    for row in rows:
        table.add_row(
            *(
                f"{v:,.0f}"
                if isinstance(v, float) and v >= 100
                else f"{v:.3g}"
                if isinstance(v, float)
                else str(v)
                for v in row.values()
            )
        )
    Console().print(table)
    for key, value in (notes or {}).items():
        Console().print(f"  {key}: {value}")
    out = report_dir() / f"{name}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": name,
                "title": title,
                "rows": rows,
                "notes": notes or {},
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
            ensure_ascii=False,
        )
    )
    Console().print(f"wrote {out}")
    return out
