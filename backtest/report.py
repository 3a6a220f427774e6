"""The backtest reports: each run keeps its own page, ``reports/backtest/<run>/index.html`` (the
comparison of every strategy on the same events, net of costs, what latency costs each one, equity
and drawdown curves from the account marked every second, the distribution of trade returns, the
splits by cause, VI type and direction, and, beside a live day's journal, each live fill matched
with the backtest's and every difference named with its cause), and ``reports/backtest/index.html``
lists every run. Self-contained (plots inlined as PNG)."""

from __future__ import annotations

import datetime as dt
import html
import json
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


def _distribution(trades: dict) -> str:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    for (name, latency), t in trades.items():
        if latency == "configured" and len(t):
            ax.hist(t["net_return"] * 100, bins=40, alpha=0.45, label=f"{name} ({len(t)})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("net return per trade (position lot), %")
    ax.set_title("distribution of trade returns (configured latency)")
    ax.legend(fontsize=8)
    return figure_png(fig)


def _latency_table(result: dict) -> pd.DataFrame:
    js = result["json"]
    rows = []
    for name in dict.fromkeys(s for s, _ in result["trades"]):
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


def fill_differences(live, backtest) -> pd.DataFrame:
    """Each order of a live day beside the backtest's order for the same VI and side (in the order
    they were sent), and what differs, with its cause: an order only one of them placed, an order
    sent at another time (the decision fired elsewhere), or the same order filled otherwise (the
    tape the live feed built is not the recorded one: KIS's whole-second stamps, its book
    snapshots)."""

    def orders(run) -> dict[tuple[str, int], list[dict]]:
        by: dict[int, dict] = {}
        for f in sorted(run.fills, key=lambda f: (f.order_ts, f.fill_ts)):
            o = by.setdefault(
                f.client_id,
                {
                    "event_id": f.event_id,
                    "side": f.side,
                    "sent": f.order_ts,
                    "filled": f.fill_ts,
                    "qty": 0,
                    "amount": 0,
                    "reason": f.reason,
                },
            )
            o["qty"] += f.qty
            o["amount"] += f.qty * f.price
        out: dict[tuple[str, int], list[dict]] = {}
        for o in by.values():
            out.setdefault((o["event_id"], o["side"]), []).append(o)
        return out

    mine, theirs = orders(live), orders(backtest)
    rows = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key, []), theirs.get(key, [])
        for i in range(max(len(a), len(b))):
            rows.append(_difference(key, a[i] if i < len(a) else None, b[i] if i < len(b) else None))
    return pd.DataFrame(rows, columns=["event_id", "side", "live", "backtest", "KRW", "cause"])


def _difference(key: tuple[str, int], live: dict | None, bt: dict | None) -> dict:
    def text(o: dict | None) -> str:
        if o is None:
            return "-"
        price = o["amount"] / o["qty"]
        return f"{o['qty']:,} @ {price:,.1f}, sent {_hms(o['sent'])}, filled {_hms(o['filled'])}"

    sign = 1 if key[1] == 1 else -1  # what a worse price costs: more paid, less received
    krw = 0.0
    if live is None or bt is None:
        cause = "only the backtest placed it" if live is None else "only the live session placed it"
    else:
        krw = -sign * (live["amount"] - bt["amount"] * live["qty"] / bt["qty"])
        moved = (live["sent"] - bt["sent"]) / 1e3
        waited = (live["filled"] - live["sent"]) / 1e3, (bt["filled"] - bt["sent"]) / 1e3
        causes = []
        if abs(moved) >= 1:
            causes.append(
                f"sent {abs(moved):,.0f} ms {'later' if moved > 0 else 'earlier'} live: the decision fired "
                f"at another time ({live['reason'] or 'its signal'})"
            )
        if abs(waited[0] - waited[1]) >= 5:
            causes.append(
                f"filled {waited[0]:,.0f} ms after it was sent live, {waited[1]:,.0f} ms in the backtest: "
                "the live feed's tape is not the recorded one (KIS's whole-second stamps, its book "
                "snapshots: an order waits for the next book shown)"
            )
        elif not causes and (live["qty"] != bt["qty"] or live["amount"] != bt["amount"]):
            causes.append(
                "sent at the same time, filled otherwise: the live feed's tape is not the recorded one"
            )
        cause = "; ".join(causes) or "the same"
    side = "buy" if key[1] == 1 else "sell"
    return {"event_id": key[0], "side": side, "live": text(live), "backtest": text(bt), "KRW": round(krw),
            "cause": cause}  # fmt: skip


def _hms(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone(dt.timedelta(hours=9))).strftime("%H:%M:%S.%f")[
        :-3
    ]


def _differences(result: dict) -> str:
    parts = []
    for live, diff in result.get("differences", {}).items():
        same = int((diff["cause"] == "the same").sum())
        parts.append(
            f"<h2>{html.escape(live)} beside the backtest, order by order</h2><p class=note>{same} of "
            f"{len(diff)} orders agree fill for fill; each other one names what differs and why (KRW: "
            f"what the live fill gained (+) or lost (-) against the backtest's price).</p>"
            + diff.to_html(index=False)
        )
    return "\n".join(parts)


def write_report(result: dict, runs: dict, out_dir: Path, run_name: str) -> Path:
    """The run's page ``out_dir/<run>/index.html`` (and its ``summary.json``), then the list of
    every run, ``out_dir/index.html``; returns the run's page."""
    meta = result["meta"]
    equity, drawdown = _curves(runs)
    dist = _distribution(result["trades"])
    days = meta["days"]
    run = html.escape(run_name)
    body = f"""<p><a href="../index.html">every backtest run</a></p><h1>vicap backtest: {run}</h1>
<p class=note>{meta["events"]} VI events of {days[0]} .. {days[-1]} ({len(days)} trading days), every
strategy on the same events. Net of brokerage on both sides and the sell tax of the settlement date.
Latency: {html.escape(meta["execution"])}; the data's feed latency {meta["feed_latency_ms"]:g} ms (what a
strategy sees is bounded by the receive time, orders match at the exchange's); queue model
{meta["queue_model"]}. The zero-latency rows replay the same decisions with none. Long only: up VIs
are traded for their continuation, down VIs for their rebound. A trade is a position lot (one buy
order), closed by sales oldest first; one still open at the end is marked at the bid net of exit
costs. Intervals: 95% bootstrap over whole days; Sharpe and Sortino from 20 trading days up,
annualised with 252 days. {_models(meta)}</p>
<h2>Comparison on the same events</h2>{result["table"].to_html(index=False)}
{_differences(result)}
<h2>What latency costs</h2>{_latency_table(result).to_html(index=False)}
<h2>Equity and drawdown</h2><img src="data:image/png;base64,{equity}"><br>
<img src="data:image/png;base64,{drawdown}">
<h2>Trade distribution</h2><img src="data:image/png;base64,{dist}">
<h2>By cause, VI type and direction</h2>{_splits(result)}
<p class=note>This run's fills: <code>trades.parquet</code>, its trades (lots): <code>lots.parquet</code>,
equity: <code>equity.parquet</code>, measures: <code>metrics.json</code>. Replay:
{meta["replay_events_per_s"]:,.0f} market events/s (the tapes opened beforehand).</p>"""
    folder = out_dir / run_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.html"
    path.write_text(_page(f"vicap backtest: {run}", body), encoding="utf-8")
    headline = result["table"][["strategy", "latency", "trades", "net P&L (KRW)"]]
    summary = meta | {"strategies": headline[headline["latency"] == "configured"].to_dict("records")}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    write_index(out_dir)
    return path


def _page(title: str, body: str) -> str:
    head = f"<meta charset=utf-8><title>{title}</title><style>{_CSS}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def write_index(out_dir: Path) -> Path:
    """``out_dir/index.html``: every run that has a page, newest first."""
    rows = []
    for summary in out_dir.glob("*/summary.json"):
        s = json.loads(summary.read_text(encoding="utf-8"))
        name = summary.parent.name
        strategies = "<br>".join(
            f"{html.escape(str(r['strategy']))}: {r['trades']} trades, {r['net P&L (KRW)']} KRW"
            for r in s.get("strategies", [])
        )
        link = f'<a href="{html.escape(name)}/index.html">{html.escape(name)}</a>'
        cells = [
            link,
            s.get("written", ""),
            f"{s['days'][0]} .. {s['days'][-1]}",
            str(s["events"]),
            html.escape(s.get("execution", "")),
        ]
        row = "".join(f"<td>{c}</td>" for c in cells) + f"<td style='text-align:left'>{strategies}</td>"
        rows.append((s.get("written", ""), f"<tr>{row}</tr>"))
    rows.sort(reverse=True)
    table = (
        "<table><tr><th>run</th><th>written</th><th>period</th><th>VIs</th><th>latency</th>"
        "<th>strategies (configured latency)</th></tr>" + "".join(r for _, r in rows) + "</table>"
    )
    body = f"<h1>vicap backtests</h1><p class=note>{len(rows)} runs; each keeps its own page.</p>{table}"
    path = out_dir / "index.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("vicap backtests", body), encoding="utf-8")
    return path
