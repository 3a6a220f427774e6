"""The model evaluation report: one self-contained HTML page (plots embedded as PNG)."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from market.synthetic.report import figure_png
from training.evaluate import MAIN_HORIZON_S

MIN_BIN_ROWS = 10


def _reliability(result: dict) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfect calibration")
    for name, m in result["models"].items():
        r = pd.DataFrame(m["reliability"])
        r = r[r["rows"] >= MIN_BIN_ROWS] if len(r) else r
        if len(r):
            ax.plot(r["predicted"], r["observed"], marker="o", ms=3, label=name)
    ax.set_xlabel(f"predicted P(continuation, {MAIN_HORIZON_S} s)")
    ax.set_ylabel("observed continuation rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return figure_png(fig)


def render(result: dict, table: pd.DataFrame, title: str) -> str:
    split = result["split"]
    base = ", ".join(f"{h}: {r:.3f}" for h, r in result["base_rate_test"].items())
    groups = _by_group(result).to_html(index=False, float_format=_three, na_rep="n/a")
    confusion = "".join(
        f"<h3>{html.escape(name)}</h3>{pd.DataFrame(m['cause_confusion']).to_html()}"
        for name, m in result["models"].items()
        if not name.startswith("oracle")
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:0.9em}}
figure{{display:inline-block;margin:0.5em}}</style>
</head><body>
<h1>{html.escape(title)} (모델 평가)</h1>
<p>Out-of-time test period: {", ".join(split["test_days"])} ({split["rows"]["test"]:,} decisions);
trained on {len(split["train_days"])} days, calibrated and stopped early on {len(split["validation_days"])}
(validation: {", ".join(split["validation_days"])}). Test-period continuation base rate (net of
costs) by horizon: {base}. Brackets: 95% intervals from resampling whole VI events.</p>
<p><b>On synthetic data these figures measure the pipeline, not the market</b>: how predictable a
VI's aftermath is there is a setting of the generator (<code>--edge</code>). The oracle rows
read the synthetic market's ground truth (its latent drift; its true cause) and bound what any
model could reach.</p>
<h2>Models side by side</h2>{table.T.to_html()}
<h2>Calibration</h2><figure><img src='data:image/png;base64,{_reliability(result)}'
alt='reliability'><figcaption>Reliability, {MAIN_HORIZON_S}-s continuation (bins of at least
{MIN_BIN_ROWS} decisions)</figcaption></figure>
<h2>By cause and VI type: ROC AUC of {MAIN_HORIZON_S}-s continuation</h2>
<p>n/a: fewer than 10 decisions of either outcome in the group.</p>{groups}
<h2>Cause confusion (rows: true, columns: predicted)</h2>{confusion}
</body></html>"""


def _by_group(result: dict) -> pd.DataFrame:
    """One row a cause or VI type, one AUC column a model."""
    keys = ["split", "group", "rows", "continuation_rate"]
    auc = f"roc_auc_{MAIN_HORIZON_S}s"
    frames = [
        pd.DataFrame(m["by_group"]).set_index(keys)[auc].rename(name) for name, m in result["models"].items()
    ]
    return pd.concat(frames, axis=1).reset_index()


def _three(x: float) -> str:
    return f"{x:.3f}"
