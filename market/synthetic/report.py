"""The market realism report: one self-contained HTML page (plots embedded as PNG) with the
stylized facts table, each fact beside its expected range."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from market.synthetic.realism import RETURN_HORIZON_S, RealismResult


def figure_png(fig) -> str:
    """A matplotlib figure as base64 PNG for an <img> of a self-contained page (closes it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(result: RealismResult) -> list[tuple[str, str]]:
    s = result.series
    figs = []
    if "returns" in s and len(s["returns"]):
        r = s["returns"]["r"].to_numpy()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        heights, _, _ = ax.hist(r, bins=120, density=True, log=True, alpha=0.7, label="1-minute returns")
        x = np.linspace(r.min(), r.max(), 300)
        ax.plot(x, stats.norm.pdf(x, r.mean(), r.std()), "r-", label="normal, same variance")
        ax.set_ylim(1e-2, heights.max() * 3)
        ax.legend()
        ax.set_title("Heavy tails: 1-minute returns (log density)")
        figs.append(("Return distribution", figure_png(fig)))
    if "abs_return_acf" in s:
        a = s["abs_return_acf"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar(a["lag"], a["acf"])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("lag (minutes)")
        ax.set_title("Volatility clustering: autocorrelation of |returns|")
        figs.append(("Volatility clustering", figure_png(fig)))
    if "volume_profile" in s:
        p = s["volume_profile"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = [f"{int(b) // 60:02d}:{int(b) % 60:02d}" for b in p["bucket"]]
        ax.bar(labels, p["share"])
        ax.tick_params(axis="x", rotation=60)
        ax.set_title("Intraday volume per minute, by half hour (U-shape)")
        figs.append(("Intraday volume", figure_png(fig)))
    if "spread_ticks" in s:
        t = s["spread_ticks"]["ticks"].to_numpy()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(np.clip(t, 0, 10), bins=np.arange(0.5, 11.5, 1), rwidth=0.8)
        ax.set_xlabel("spread (ticks, 10 = 10 or more)")
        ax.set_title("Quoted spread in continuous trading")
        figs.append(("Spreads", figure_png(fig)))
    if "vi_durations" in s and len(s["vi_durations"]):
        d = s["vi_durations"]["seconds"].to_numpy()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(d, bins=np.arange(115, 156, 2))
        ax.axvspan(120, 150, color="g", alpha=0.1, label="2:00 + random end within 30 s")
        ax.legend()
        ax.set_xlabel("seconds from trigger to release")
        ax.set_title("VI durations")
        figs.append(("VI durations", figure_png(fig)))
    if "post_release" in s and len(s["post_release"]):
        pr = s["post_release"]
        causes = sorted(pr["cause"].unique())
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.boxplot([pr.loc[pr["cause"] == c, "ret"] for c in causes], tick_labels=causes, showfliers=False)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("return from the auction price, signed")
        ax.set_title(f"Return {RETURN_HORIZON_S // 60} min after release, in the VI's direction, by cause")
        figs.append(("Post-release returns by cause", figure_png(fig)))
    return figs


def _four_places(x: float) -> str:
    return f"{x:.4f}"


def write_report(result: RealismResult, source: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in result.facts:
        status = "ok" if f.ok else ("BROKEN" if f.invariant else "out of range")
        cls = "ok" if f.ok else ("bad" if f.invariant else "warn")
        kind = "invariant" if f.invariant else "stylized fact"
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(f.name)}</td><td>{kind}</td><td>{f.value:,.4g}</td>"
            f"<td>{html.escape(f.expected)}</td><td>{status}</td></tr>"
        )
    tables = "".join(
        f"<h3>{html.escape(name.replace('_', ' '))}</h3>{df.to_html(index=False, float_format=_four_places)}"
        for name, df in result.tables.items()
    )
    figures = "".join(
        f"<figure><img src='data:image/png;base64,{img}' alt='{html.escape(title)}'>"
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, img in _figures(result)
    )
    verdict = "all invariants hold" if result.invariants_ok else "AN INVARIANT IS BROKEN"
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>vicap market realism report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} tr.ok td:last-child{{color:#080}}
tr.warn td:last-child{{color:#b60}} tr.bad td{{color:#c00;font-weight:bold}}
figure{{display:inline-block;margin:0.5em}}</style></head><body>
<h1>Market realism report (시장 현실성 점검)</h1>
<p>Dataset: <code>{html.escape(str(source))}</code> &mdash; <b>{verdict}</b>.
Stylized facts are measured on the data and shown beside the range a real KRX market shows;
invariants must hold exactly.</p>
<p><b>Synthetic results measure the pipeline, not the market.</b> How predictable a VI's aftermath
is here is a setting of the generator (<code>--edge</code>: <code>low</code>, the default, leaves
no free lunch; <code>high</code> gives a strong signal for pipeline tests). The predictability
section (<code>vi_predictability_*</code> below, and the facts on returns after a release and
single-feature AUCs) shows how easy this market is: on the default edge its targets must hold,
each widened by two standard errors of its sample.</p>
<h2>Stylized facts and invariants</h2>
<table><tr><th>measure</th><th>kind</th><th>value</th><th>expected</th><th>status</th></tr>{"".join(rows)}</table>
<h2>Plots</h2>{figures}
<h2>Tables</h2>{tables}
</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
