"""Ray Train (checkpoints, resume), Ray Tune (Optuna + ASHA), the BentoML registry, and the
`vicap train / tune / evaluate / models list` commands on a built data root."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.dataset import walk_forward
from training.nets import NetConfig
from training.neural import NeuralModel, TrainConfig
from training.planted import planted

TINY = NetConfig(width=16, depth=1, heads=2, seq_seconds=32)


@pytest.fixture(scope="module")
def small_split():
    ds = planted(events=300, days=8, seed=1)
    fold = walk_forward(ds.days, purge_days=0)[0]
    return ds.on_days(fold.train), ds.on_days(fold.validation), ds.on_days(fold.test)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from training.ray_jobs import init_ray

    init_ray()
    yield
    ray.shutdown()


def test_ray_train_checkpoints_each_epoch_and_resumes(small_split, ray_session, tmp_path):
    from training.ray_jobs import fit_with_ray

    train, val, test = small_split
    first = fit_with_ray(NeuralModel(TINY, TrainConfig(epochs=2)), train, val, tmp_path, "run")
    assert [r["epoch"] for r in first.history] == [1, 2]
    assert list((tmp_path / "run").glob("checkpoint_*"))
    # the same run name with more epochs starts from the last checkpoint, not from epoch 1
    again = fit_with_ray(NeuralModel(TINY, TrainConfig(epochs=3)), train, val, tmp_path, "run")
    assert min(r["epoch"] for r in again.history) >= 2 and max(r["epoch"] for r in again.history) == 3
    pred = again.predict(test)
    assert np.isfinite(pred.continuation).all() and pred.continuation.shape == (len(test), 4)


def test_ray_tune_sweeps_with_optuna_and_asha_and_returns_the_best(small_split, ray_session, tmp_path):
    from training.ray_jobs import tune

    train, val, _ = small_split
    table, best = tune(NeuralModel(TINY, TrainConfig(epochs=2)), train, val, 2, tmp_path, "sweep")
    assert len(table) == 2 and {"config/lr", "config/width", "val_loss"} <= set(table.columns)
    assert best.net_config.width == int(table.sort_values("val_loss")["config/width"].iloc[0])
    assert best.net is not None


@pytest.mark.parametrize("kind", ["lightgbm", "lstm"])
def test_a_registered_model_loads_back_and_predicts_the_same(small_split, kind):
    from training import registry
    from training.models import LightGBM

    train, val, test = small_split
    model = (
        LightGBM(rounds=20)
        if kind == "lightgbm"
        else NeuralModel(NetConfig(kind="lstm", width=16), TrainConfig(epochs=1))
    )
    model.fit(train, val)
    tag = registry.save(
        model, {"feature_service": "test", "channels": train.channels}, name=f"vicap-test-{kind}"
    )
    loaded, meta = registry.load(f"vicap-test-{kind}")
    assert meta["tag"] == tag and meta["kind"] == kind
    a, b = model.predict(test), loaded.predict(test)
    for head in ("continuation", "rebound", "ret_dir", "entry", "cause"):
        assert np.allclose(getattr(a, head), getattr(b, head), atol=1e-6)
    registry.check_features(meta, train.tabular)
    with pytest.raises(registry.FeatureMismatch, match="trained on feature list"):
        registry.check_features(meta, [*train.tabular, "a_new_feature"])
    assert tag in [r["tag"] for r in registry.list_models()]


def test_train_evaluate_backtest_and_list_on_a_built_data_root(applied, dataset, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from training.registry import list_models
    from vicap.cli import app

    monkeypatch.setenv("VICAP_DATA_DIR", str(applied.root))
    runner = CliRunner()
    out = runner.invoke(app, ["train", "--model", "lightgbm", "--purge-days", "0"])
    assert out.exit_code == 0, out.output
    assert "registered vicap-lightgbm:" in out.output
    # scored on a data root named by --data-dir, not the settings' own
    monkeypatch.setenv("VICAP_DATA_DIR", str(tmp_path / "elsewhere"))
    args = ["evaluate", "--model", "vicap-lightgbm", "--purge-days", "0", "--data-dir", str(applied.root)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    metrics = json.loads((applied.reports / "model" / "metrics.json").read_text())
    names = set(metrics["models"])
    assert {"base_rate", "logistic", "lightgbm", "oracle: latent drift", "oracle: true cause"} <= names
    assert any(n.startswith("vicap-lightgbm:") for n in names)
    assert metrics["split"]["test_days"] and not set(metrics["split"]["test_days"]) & set(
        metrics["split"]["train_days"]
    )
    page = (applied.reports / "model" / "index.html").read_text()
    assert "data:image/png;base64" in page and "measure the pipeline, not the market" in page
    # the registered model trades in the backtester beside the rule strategies, on its own test days
    if not applied.raw.exists():  # the session's ticks live beside the built root: the backtest replays them
        applied.raw.symlink_to(dataset)
    args = [
        "backtest",
        "--compare",
        "--model",
        "vicap-lightgbm",
        "--run",
        "t",
        "--data-dir",
        str(applied.root),
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    trades = pd.read_parquet(applied.reports / "backtest" / "t" / "trades.parquet")
    assert set(trades["strategy"]) >= {"buy-and-hold", "model (vicap-lightgbm)"}
    days = {d.isoformat() for d in trades["fill_ts"].dt.date}
    assert days <= set(metrics["split"]["test_days"])
    backtest = json.loads((applied.reports / "backtest" / "t" / "metrics.json").read_text())
    assert {"buy-and-hold | configured latency", "buy-and-hold | zero latency"} <= set(backtest)
    page = (applied.reports / "backtest" / "t" / "index.html").read_text()
    assert "What latency costs" in page and "model (vicap-lightgbm)" in page
    runs = (applied.reports / "backtest" / "index.html").read_text()  # every run keeps its page
    assert 'href="t/index.html"' in runs
    out = runner.invoke(app, ["backtest", "--strategy", "model"])
    assert out.exit_code == 2 and "needs --model" in out.output
    out = runner.invoke(app, ["models", "list"])
    assert out.exit_code == 0 and "registered models" in out.output
    assert any(r["tag"].startswith("vicap-lightgbm:") for r in list_models())
    out = runner.invoke(app, ["evaluate", "--model", "vicap-nosuchmodel"])
    assert out.exit_code == 2 and "no such registered model" in out.output
