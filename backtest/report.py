"""``reports/backtest/index.html``: the comparison of every strategy on the same events, net of
costs, what latency costs each one, equity and drawdown curves, the distribution of trade returns,
and the splits by cause, VI type and direction. Self-contained (plots inlined as PNG)."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from market.synthetic.report import figure_png

_CSS = """body{font-family:'Noto Sans CJK KR',sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child{text-align:left}.note{color:#555;font-size:13px}"""


def _curves(runs: dict) -> tuple[str, str]:
    fig_e, ax_e = plt.subplots(figsize=(11, 4))
    fig_d, ax_d = plt.subplots(figsize=(11, 3))
    for (name, latency), run in runs.items():
        if latency != "configured":
            continue
        eq = run.equity_frame()
        if eq.empty:
            continue
        e = eq["equity"].to_numpy(dtype=float)
        ax_e.plot(eq["ts"].dt.tz_localize(None), e / run.config.capital - 1.0, label=name, lw=1.2)
        peak = np.maximum.accumulate(e)
        ax_d.plot(eq["ts"].dt.tz_localize(None), -(peak - e) / peak, label=name, lw=1.0)
    ax_e.set_ylabel("equity, return on capital")
    ax_e.set_title("equity (net of costs, configured latency)")
    ax_d.set_ylabel("drawdown")
    for ax in (ax_e, ax_d):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return figure_png(fig_e), figure_png(fig_d)


def _distribution(trips: dict) -> str:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for (name, latency), t in trips.items():
        if latency == "configured" and len(t):
            ax.hist(t["net_return"] * 100, bins=40, alpha=0.45, label=f"{name} ({len(t)})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("net return per round trip, %")
    ax.set_title("distribution of trade returns (configured latency)")
    ax.legend(fontsize=8)
    return figure_png(fig)


def _latency_table(result: dict) -> pd.DataFrame:
    js = result["json"]
    rows = []
    for name in dict.fromkeys(s for s, _ in result["trips"]):
        conf, zero = js.get(f"{name} | configured latency"), js.get(f"{name} | zero latency")
        if not conf or not zero:
            continue
        rows.append(
            {
                "strategy": name,
                "trades (zero / configured)": f"{zero['trades']} / {conf['trades']}",
                "mean net, zero latency": f"{zero['mean_net_return'][0]:+.3%}",
                "mean net, configured": f"{conf['mean_net_return'][0]:+.3%}",
                "net P&L, zero (KRW)": f"{zero['net_pnl']:+,.0f}",
                "net P&L, configured (KRW)": f"{conf['net_pnl']:+,.0f}",
                "what latency cost (KRW)": f"{zero['net_pnl'] - conf['net_pnl']:+,.0f}",
            }
        )
    return pd.DataFrame(rows)


def _splits(result: dict) -> str:
    parts = []
    for key, m in result["json"].items():
        if not key.endswith("configured latency"):
            continue
        for col, records in m["by"].items():
            if records:
                df = pd.DataFrame(records)
                df["win_rate"] = df["win_rate"].map("{:.0%}".format)
                df["mean_net_return"] = df["mean_net_return"].map("{:+.2%}".format)
                df["net_pnl"] = df["net_pnl"].map("{:+,.0f}".format)
                parts.append(f"<h4>{html.escape(key)}: by {col}</h4>" + df.to_html(index=False))
    return "\n".join(parts)


def _models(meta: dict) -> str:
    parts = []
    if meta.get("model"):
        model, threshold = html.escape(meta["model"]), meta["threshold"]
        parts.append(f"Model {model}, threshold {threshold:.3f} (chosen on validation days).")
    if meta.get("policy"):
        parts.append(f"Policy {html.escape(meta['policy'])}.")
    return " ".join(parts)


def write_report(result: dict, runs: dict, out_dir: Path, run_name: str) -> Path:
    meta = result["meta"]
    equity, drawdown = _curves(runs)
    dist = _distribution(result["trips"])
    days = meta["days"]
    run = html.escape(run_name)
    body = f"""<h1>vicap backtest: {run}</h1>
<p class=note>{meta["events"]} VI events of {days[0]} .. {days[-1]} ({len(days)} trading days), every
strategy on the same events. Net of brokerage on both sides and the sell tax of the settlement date.
Orders reach the exchange {meta["latency_ms"]:g} ms after the decision and fills come back
{meta["response_ms"]:g} ms later (queue model {meta["queue_model"]}); the zero-latency rows replay the
same decisions with none. Long only: up VIs are traded for their continuation, down VIs for their
rebound. Intervals: 95% bootstrap (round trips for per-trade measures, days for Sharpe and Sortino,
annualised with 252 days; n/a with fewer than two days). {_models(meta)}</p>
<h2>Comparison on the same events</h2>{result["table"].to_html(index=False)}
<h2>What latency costs</h2>{_latency_table(result).to_html(index=False)}
<h2>Equity and drawdown</h2><img src="data:image/png;base64,{equity}"><br>
<img src="data:image/png;base64,{drawdown}">
<h2>Trade distribution</h2><img src="data:image/png;base64,{dist}">
<h2>By cause, VI type and direction</h2>{_splits(result)}
<p class=note>This run's trades: <code>{run}/trades.parquet</code>, equity: <code>{run}/equity.parquet</code>,
measures: <code>{run}/metrics.json</code>. Replay: {meta["replay_events_per_s"]:,.0f} market events/s
(the tapes read beforehand).</p>"""
    head = f"<meta charset=utf-8><title>vicap backtest</title><style>{_CSS}</style>"
    page = f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
