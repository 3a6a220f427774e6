"""``vicap rl train``: PPO (RLlib, new API stack) on the VI trading environment built from a data
root's events, split by time like the models; the greedy policy is evaluated on the validation and
test events beside a random policy, staying out and buying at the release, and registered."""

from __future__ import annotations

import datetime as dt
import json
import time

from rich.console import Console
from rich.table import Table

from vicap.settings import Settings, get_settings

console = Console()


def run_rl_train(
    iterations: int = 20,
    horizon_s: int = 60,
    drawdown_weight: float = 0.1,
    batch_steps: int = 2_000,
    purge_days: int = 1,
    name: str | None = None,
    ray_address: str | None = None,
    settings: Settings | None = None,
    env_runners: int = 0,
    model_tag: str | None = None,
    start_s: int = 0,
) -> int:
    from feature_repo.definitions import SERVICE
    from training import registry
    from training.pipeline import Split
    from training.ray_jobs import init_ray
    from training.rl import episodes as episode_sets
    from training.rl.ppo import GreedyPolicy, PPOSettings, evaluate, module_dir, reference_policies, train
    from training.rl.simulator import SimConfig
    from vicap.train_cmd import _read

    settings = settings or get_settings()
    paths = settings.paths
    ds = _read(settings, SERVICE)
    split = Split.of(ds, purge_days=purge_days)
    days = {"train": split.fold.train, "validation": split.fold.validation, "test": split.fold.test}
    t0 = time.perf_counter()
    outputs, observed = None, None
    if model_tag:  # the policy also observes this model's outputs at each decision
        from training.pipeline import decision_outputs

        model, model_meta = registry.load(model_tag)
        registry.check_features(model_meta, ds.tabular)
        outputs = {k: decision_outputs(model, ds.on_days(v)).to_numpy() for k, v in days.items()}
        observed = model_meta["tag"]
    sets, normalizer = episode_sets.build(ds, days, paths.events, paths.raw, horizon_s, outputs)
    run = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = paths.root / "training" / "rl" / run
    episodes_path = run_dir / "episodes.pkl"
    episode_sets.save(episodes_path, sets)
    console.print(
        "episodes (one per VI): " + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
        + f", built in {time.perf_counter() - t0:.1f} s under {run_dir} "
        + f"({episodes_path.stat().st_size / 1e6:,.1f} MB: references into the tape cache, not copies)"
    )  # fmt: skip
    if not sets["train"]:
        console.print("[red]no training episode: the training days hold no released VI[/]")
        return 2
    sim = SimConfig(horizon_s=horizon_s, start_s=start_s)
    env_config = {"episodes_path": str(episodes_path), "split": "train", "sim": sim.to_dict(),
                  "drawdown_weight": drawdown_weight, "observe_outputs": observed is not None}  # fmt: skip
    init_ray(ray_address)
    s = PPOSettings(iterations, batch_steps, min(256, batch_steps), env_runners=env_runners)
    checkpoint, curve = train(env_config, s, run_dir)
    curve_table = Table(title="PPO learning curve (training episodes)")
    for c in ("iteration", "episode_return_mean", "env_steps", "seconds"):
        curve_table.add_column(c, justify="right")
    for r in curve:
        curve_table.add_row(str(r["iteration"]), f"{r['episode_return_mean']:+.4f}", f"{r['env_steps']:,}",
                            f"{r['seconds']:.1f}")  # fmt: skip
    console.print(curve_table)
    policy = GreedyPolicy(module_dir(checkpoint))
    scoring = {k: v for k, v in env_config.items() if k not in ("episodes_path", "split")}
    results = {
        split_name: evaluate(sets[split_name], scoring, {"ppo (greedy)": policy, **reference_policies()})
        for split_name in ("validation", "test")
        if sets[split_name]
    }
    table = Table(title="policies on held-out events (net P&L per event after costs, KRW)")
    for c in ("split", "policy", "events", "mean return", "mean net P&L", "traded"):
        table.add_column(c, justify="right")
    for split_name, rows in results.items():
        for policy_name, r in rows.items():
            table.add_row(split_name, policy_name, str(r["episodes"]), f"{r['mean_return']:+.4f}",
                          f"{r['mean_net_pnl']:+,.0f}", f"{r['traded']:.0%}")  # fmt: skip
    console.print(table)
    meta = {
        "feature_service": SERVICE,
        "env": {k: v for k, v in env_config.items() if k != "episodes_path"},
        "ppo": s.__dict__,
        "data_from": ds.days[0].isoformat(),
        "data_to": ds.days[-1].isoformat(),
        **split.describe(),
        "metrics": results,
        "learning_curve": curve,
        **({"observed_model": observed} if observed else {}),
    }
    tag = registry.save_policy(module_dir(checkpoint), normalizer, json.loads(json.dumps(meta, default=str)),
                               name or registry.POLICY_NAME)  # fmt: skip
    console.print(f"registered {tag}")
    return 0
