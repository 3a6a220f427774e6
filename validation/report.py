"""The data-quality report a person reads: ``reports/validation/index.html``, one self-contained
page (plots embedded as PNG, no script) that opens offline, which GX's Data Docs index does not
(its tables come from a CDN). Rows in / accepted / quarantined by reason, gaps by stock-day with
their size, the partitions that failed or lost rows, each linked to its GX validation result."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# the partitions listed one by one; the rest are counted
LISTED = 200


def _figure(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"<img src='data:image/png;base64,{data}'>"


def _outcome_plot(report) -> str:
    reasons = report.reasons.most_common(12)
    labels = ["accepted", *(r if len(r) < 60 else r[:57] + "..." for r, _ in reasons)]
    counts = [report.rows_accepted, *(n for _, n in reasons)]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.2))
    ax.barh(labels[::-1], counts[::-1], color=["#c33"] * len(reasons) + ["#3a3"])
    ax.set_xscale("log")
    ax.set_xlabel("rows (log scale)")
    ax.set_title("Rows accepted, and quarantined by reason (a row may have several)")
    return _figure(fig)


def _gap_plot(report) -> str:
    by_partition: dict[str, int] = {}
    for g in report.gaps:
        by_partition[g["partition"]] = by_partition.get(g["partition"], 0) + abs(g["missing_shares"])
    top = sorted(by_partition.items(), key=lambda kv: -kv[1])[:25]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(top) + 1.2))
    ax.barh([p.removesuffix(".parquet") for p, _ in top][::-1], [n for _, n in top][::-1], color="#d80")
    ax.set_xlabel("shares missing from cum_volume")
    ax.set_title("Gaps in cum_volume (dropped trades) by stock-day")
    return _figure(fig)


def _gx_pages(reports_dir: Path) -> dict[str, str]:
    """GX run name -> its newest validation result page, relative to ``reports_dir``."""
    site = reports_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations" / "ticks"
    pages: dict[str, str] = {}
    for page in sorted(site.glob("*/*/*.html")):  # run_name/run_time/batch: the newest run last
        pages[page.parent.parent.name] = page.relative_to(reports_dir).as_posix()
    return pages


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _gap_cell(gaps: list[dict]) -> str:
    return f"{len(gaps)} ({sum(abs(g['missing_shares']) for g in gaps):,} shares)" if gaps else "-"


def _status(p) -> str:
    """What is wrong with a partition, worst first."""
    if p.status != "ok":
        return p.status
    return "gapped" if p.gaps else "rows quarantined" if p.quarantined else "out of order"


def _partition_rows(report, pages: dict[str, str]) -> tuple[list[list[str]], int]:
    flagged = [p for p in report.partitions if p.status != "ok" or p.quarantined or p.gaps or p.out_of_order]
    rows = []
    for p in flagged[:LISTED]:
        page = pages.get(p.gx_run or "")
        link = f"<a href='{html.escape(page)}'>{html.escape(p.gx_run)}</a>" if page else "-"
        status = _status(p)
        reasons = "; ".join(f"{html.escape(r)}: {n:,}" for r, n in p.reasons.items())
        rows.append(
            [
                html.escape(p.partition),
                f"<span class='{'bad' if p.critical else 'warn'}'>{status}</span>",
                f"{p.rows:,}",
                f"{p.accepted:,}",
                f"{p.quarantined:,}",
                reasons or "-",
                _gap_cell(p.gaps),
                str(p.out_of_order or "-"),
                link,
            ]
        )
    return rows, len(flagged)


def write_report(report, dataset: Path, reports_dir: Path) -> Path:
    """Write ``reports_dir/index.html`` for a :class:`validation.runner.ValidationReport`."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    pages = _gx_pages(reports_dir)
    d = report.on_disk
    why = "; ".join(report.critical[:5]) or "counts do not add up"
    verdict = "<b class='ok'>passed</b>" if report.ok else f"<b class='bad'>failed</b>: {html.escape(why)}"
    counts = _table(
        ["", "verdict", "on disk"],
        [
            ["rows in", f"{report.rows_in:,}", f"{d.get('rows_in', 0):,}"],
            ["accepted (what later stages read)", f"{report.rows_accepted:,}", f"{d.get('accepted', 0):,}"],
            ["quarantined", f"{report.rows_quarantined:,}", f"{d.get('quarantined', 0):,}"],
            ["in = accepted + quarantined", "", str(report.balanced)],
        ],
    )
    reasons = _table(
        ["reason", "rows"], [[html.escape(r), f"{n:,}"] for r, n in report.reasons.most_common()]
    )
    gaps = _table(
        ["partition", "stock", "at", "shares missing"],
        [
            [html.escape(g["partition"]), g["stock_code"], g["timestamp"], f"{g['missing_shares']:,}"]
            for g in report.gaps[:LISTED]
        ],
    )
    rows, flagged = _partition_rows(report, pages)
    header = ["partition", "status", "rows", "accepted", "quarantined", "reasons", "gaps", "out of order"]
    partitions = _table([*header, "GX result"], rows)
    plots = _outcome_plot(report) + (_gap_plot(report) if report.gaps else "")
    more = f"<p>{flagged - LISTED:,} more not listed.</p>" if flagged > LISTED else ""
    docs = (
        f"<a href='{html.escape(report.docs.relative_to(reports_dir).as_posix())}'>Data Docs</a>"
        if report.docs and report.docs.is_relative_to(reports_dir)
        else "Data Docs"
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>vicap data quality: {html.escape(dataset.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:0.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} .ok{{color:#080}} .bad{{color:#c00}}
.warn{{color:#b60}} img{{margin:0.5em;vertical-align:top}}</style></head><body>
<h1>Data quality (데이터 품질): tick validation</h1>
<p>Dataset <code>{html.escape(str(dataset))}</code>: {report.files:,} stock-day partitions,
{report.unreadable_files} unreadable. Validation {verdict}. The raw files are never rewritten:
the verdict lies beside them (<code>validation_summary.json</code>, <code>quarantine/ticks/</code>).
Each partition's full result is in GX's {docs}.</p>
<h2>Rows</h2>{counts}
{plots}
<h2>Quarantined rows by reason</h2>{reasons if report.reasons else "<p>none</p>"}
<h2>Gaps in cum_volume: {len(report.gaps):,} in {len(report.gapped):,} partition(s), rows kept</h2>
{gaps if report.gaps else "<p>none</p>"}
<h2>Partitions that failed, lost rows or have gaps: {flagged:,} of {report.files:,}</h2>
{partitions if rows else "<p>none: every partition passed whole</p>"}{more}
<h2>VI log</h2>{
        "<p class='ok'>passed</p>"
        if not report.vi_log_failures
        else _table(["failure"], [[html.escape(f)] for f in report.vi_log_failures[:LISTED]])
    }
</body></html>"""
    path = reports_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
