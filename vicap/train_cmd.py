"""``vicap train``, ``vicap tune``, ``vicap evaluate`` and ``vicap models list``."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vicap.settings import Settings, get_settings

console = Console()


def _read(settings: Settings, service: str):
    from training.pipeline import read
    from vicap.features_cmd import _quiet_feast

    _quiet_feast()
    t0 = time.perf_counter()
    ds = read(settings, service)
    console.print(
        f"read {len(ds):,} decisions of {ds.frame['event_id'].nunique():,} VIs over {len(ds.days)} days "
        f"from Feast ({service}, {len(ds.tabular)} features) in {time.perf_counter() - t0:.1f} s"
    )
    return ds


def _metadata(split, service: str, ds, scores: dict, extra: dict) -> dict:
    from training.evaluate import MAIN_HORIZON_S

    main = {r["metric"]: r["value"] for r in scores["metrics"]}
    return {
        "feature_service": service,
        "features": len(ds.tabular),
        "channels": list(ds.channels),
        "data_from": ds.days[0].isoformat(),
        "data_to": ds.days[-1].isoformat(),
        **split.describe(),
        f"test_roc_auc_{MAIN_HORIZON_S}s": main[f"roc_auc_{MAIN_HORIZON_S}s"],
        "test_metrics": {k: v for k, v in main.items() if v == v},  # NaN (not measurable) left out
        **extra,
    }


def _print_table(result: dict, title: str) -> None:
    from training.pipeline import metrics_table

    df = metrics_table(result)
    t = Table(title=title)
    t.add_column("model")
    cols = ["roc_auc_60s", "roc_auc_300s", "brier_60s", "accuracy_60s", "base_accuracy_60s", "cause_macro_f1"]
    for c in cols:
        t.add_column(c)
    for name, row in df.iterrows():
        t.add_row(name, *(row[c] for c in cols))
    console.print(t)
    rates = ", ".join(f"{h} {r:.3f}" for h, r in result["base_rate_test"].items())
    console.print(f"test-period continuation base rate: {rates}")


def run_train(
    kind: str,
    service: str,
    epochs: int,
    purge_days: int,
    ray_address: str | None,
    name: str | None = None,
    settings: Settings | None = None,
) -> int:
    from training import registry
    from training.models import LightGBM
    from training.nets import NetConfig
    from training.neural import NeuralModel, TrainConfig
    from training.pipeline import NEURAL_KINDS, Split, compare

    settings = settings or get_settings()
    if kind not in (*NEURAL_KINDS, "lightgbm"):
        console.print(f"[red]--model {kind}: expected transformer, lstm or lightgbm[/]")
        return 2
    ds = _read(settings, service)
    split = Split.of(ds, purge_days=purge_days)
    t0 = time.perf_counter()
    if kind == "lightgbm":
        model = LightGBM().fit(split.train, split.validation)
    else:
        from training.ray_jobs import fit_with_ray

        model = NeuralModel(NetConfig(kind=kind), TrainConfig(epochs=epochs))
        run = name or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        fit_with_ray(model, split.train, split.validation, settings.paths.root / "training", run, ray_address)
    seconds = time.perf_counter() - t0
    result = compare({kind: model}, split, bootstrap=100)
    scores = result["models"][kind]
    history = getattr(model, "history", [])
    tag = registry.save(
        model, _metadata(split, service, ds, scores, {"train_seconds": seconds, "history": history})
    )
    console.print(f"trained {kind} in {seconds:.1f} s; registered {tag}")
    _print_table(result, f"{tag} on its test period (no baselines: `vicap evaluate --model {tag}`)")
    return 0


def run_tune(
    kind: str,
    samples: int,
    service: str,
    epochs: int,
    purge_days: int,
    ray_address: str | None,
    settings: Settings | None = None,
) -> int:
    from training import registry
    from training.nets import NetConfig
    from training.neural import NeuralModel, TrainConfig
    from training.pipeline import Split, compare
    from training.ray_jobs import tune

    settings = settings or get_settings()
    ds = _read(settings, service)
    split = Split.of(ds, purge_days=purge_days)
    t0 = time.perf_counter()
    run = f"tune-{kind}-{int(time.time())}"
    try:
        table, best = tune(
            NeuralModel(NetConfig(kind=kind), TrainConfig(epochs=epochs)),
            split.train,
            split.validation,
            samples,
            settings.paths.root / "training",
            run,
            ray_address,
        )
    except RuntimeError as exc:
        console.print(f"[red]vicap tune: {exc}[/]")
        return 1
    seconds = time.perf_counter() - t0
    out = settings.paths.reports / "model"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{run}_trials.csv", index=False)
    result = compare({kind: best}, split, bootstrap=100)
    meta = {"train_seconds": seconds, "tune_run": run, "trials": samples}
    tag = registry.save(best, _metadata(split, service, ds, result["models"][kind], meta))
    shown = [c for c in table.columns if c.startswith("config/")] + ["val_loss", "training_iteration"]
    t = Table(
        title=f"{samples} trials in {seconds:.0f} s (ASHA + Optuna); table: {out / f'{run}_trials.csv'}"
    )
    for c in shown:
        t.add_column(c.removeprefix("config/"))
    for _, row in table.sort_values("val_loss")[shown].iterrows():
        t.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(t)
    console.print(f"registered the best trial as {tag}")
    return 0


def run_evaluate(tag: str, data_dir: Path | None, purge_days: int, settings: Settings | None = None) -> int:
    from training import registry
    from training.pipeline import Split, compare, reference_models, write_report

    settings = settings or (get_settings(data_dir=data_dir) if data_dir else get_settings())
    try:
        model, meta = registry.load(tag)
    except Exception as exc:  # bentoml raises its own NotFound
        console.print(f"[red]{tag}: no such registered model ({exc}); `vicap models list` shows them[/]")
        return 2
    ds = _read(settings, meta["feature_service"])
    try:
        registry.check_features(meta, ds.tabular)
    except registry.FeatureMismatch as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    split = Split.of(ds, purge_days=purge_days)
    models = {meta["tag"]: model, **reference_models(split)}
    result = compare(models, split) | {"model": {k: v for k, v in meta.items() if k != "history"}}
    page = write_report(result, settings.paths.reports / "model", f"vicap model report: {meta['tag']}")
    _print_table(
        result, f"test period {split.fold.test[0]} .. {split.fold.test[-1]} of {settings.paths.root}"
    )
    console.print(f"report: {page}")
    return 0


def run_models_list() -> int:
    from training.registry import list_models

    rows = list_models()
    t = Table(title="registered models (BentoML model store)")
    for c in ("tag", "kind", "service", "data", "test_auc_60s", "created"):
        t.add_column(c)
    for r in rows:
        auc = r["test_auc_60s"]
        t.add_row(
            r["tag"],
            r["kind"],
            r["service"],
            r["data"],
            f"{auc:.3f}" if auc is not None else "",
            str(r["created"])[:19],
        )
    console.print(t)
    return 0


def run_demo_models(settings: Settings, purge_days: int) -> int:
    """The demo's models: a small Transformer with Ray Train, a tiny Tune sweep, LightGBM; the
    Transformer evaluated beside the baselines, the base rate and the oracles."""
    from feature_repo.definitions import SERVICE

    return (
        run_train("transformer", SERVICE, 3, purge_days, None, settings=settings)
        or run_tune("transformer", 2, SERVICE, 2, purge_days, None, settings)
        or run_train("lightgbm", SERVICE, 1, purge_days, None, settings=settings)
        or run_evaluate("vicap-transformer", None, purge_days, settings)
    )
