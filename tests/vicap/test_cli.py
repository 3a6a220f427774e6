from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from market.krx.schema import TICK_SCHEMA, VI_LOG_SCHEMA, check_table
from vicap.cli import app

runner = CliRunner()


def test_rules_self_check_passes():
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0, result.output
    assert "WRONG" not in result.output and result.output.count(" ok ") >= 10


def test_demo_runs_a_session_with_a_vi_and_writes_valid_files(data_dir):
    result = runner.invoke(app, ["demo", "--seed", "11"])
    assert result.exit_code == 0, result.output
    assert "demo ok" in result.output and "dynamic" in result.output
    out = data_dir / "demo" / "engine_session"
    ticks = pq.read_table(out / "ticks.parquet")
    vi_log = pq.read_table(out / "vi_log.parquet")
    check_table(ticks, TICK_SCHEMA)
    check_table(vi_log, VI_LOG_SCHEMA)
    assert vi_log.num_rows >= 1 and ticks.num_rows > 1_000
    # the demo ends its learning with a PPO policy and compares every strategy on the test events
    assert "registered vicap-ppo:" in result.output and "backtest: net of costs" in result.output
    measures = json.loads((data_dir / "reports" / "backtest" / "demo" / "metrics.json").read_text())
    names = {key.split(" | ")[0] for key in measures}
    assert {"buy-and-hold", "rule-momentum", "rule-rebound"} <= names
    assert any(n.startswith("model (vicap-lightgbm") for n in names) and any(
        n.startswith("ppo (vicap-ppo") for n in names
    )
    assert (data_dir / "reports" / "backtest" / "index.html").exists()
    # the model service answered /predict and /act over HTTP on the demo's registered model
    assert "/predict" in result.output and '"rebound_probability"' in result.output
    assert '"cause_probabilities"' in result.output and "-> 200" in result.output
