"""``vicap backtest``: strategies over a period's VI events on the KRX execution model, each with
the configured latency and with none, into ``reports/backtest/<run>/`` (trades, equity, metrics)
and the report ``reports/backtest/index.html``."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from vicap.settings import Settings, get_settings

console = Console()
EXIT_GRACE_S = 300  # after an event's window, how long its exits may still take (a VI, a limit lock)
RULE_STRATEGIES = ("buy-and-hold", "rule-momentum", "rule-rebound")
MODEL_STRATEGY = "model"
POLICY_STRATEGY = "ppo"


def _period(ds, meta: dict | None, start: str | None, end: str | None, purge_days: int) -> list[dt.date]:
    from training.pipeline import Split

    if start or end:
        lo = dt.date.fromisoformat(start) if start else ds.days[0]
        hi = dt.date.fromisoformat(end) if end else ds.days[-1]
        return [d for d in ds.days if lo <= d <= hi]
    if meta and meta.get("test_days"):  # a model trained on another data root may name days not here
        return [d for d in ds.days if d.isoformat() in set(meta["test_days"])]
    return list(Split.of(ds, purge_days=purge_days).fold.test)


def run_backtest(
    strategies: list[str],
    model_tag: str | None,
    start: str | None,
    end: str | None,
    purge_days: int = 1,
    latency_ms: float = 30.0,
    response_ms: float = 30.0,
    queue_model: str = "risk_averse",
    threshold: float | None = None,
    run_name: str | None = None,
    data_dir: Path | None = None,
    settings: Settings | None = None,
    policy_tag: str | None = None,
    extra_runs: dict | None = None,
    only_events: set[str] | None = None,
) -> int:
    """``extra_runs``: {(name, "configured"): RunResult} set beside the backtest's in the report (a
    live day's journal); ``only_events``: backtest these VIs only (the live day's)."""
    from backtest.data import event_tapes, load_events
    from backtest.engine import BacktestConfig, Backtester, as_decisions
    from backtest.execution import ExecutionConfig, QueueModel
    from backtest.metrics import compare_runs
    from backtest.report import write_report
    from backtest.strategies import MODEL_OUTPUTS, make_strategy
    from training.pipeline import decision_outputs
    from vicap.train_cmd import _read

    settings = settings or (get_settings(data_dir=data_dir) if data_dir else get_settings())
    paths = settings.paths
    from training import registry

    model, meta, policy = None, None, None
    for wanted, tag, option in (
        (MODEL_STRATEGY, model_tag, "--model"),
        (POLICY_STRATEGY, policy_tag, "--policy"),
    ):
        if wanted not in strategies:
            continue
        if not tag:
            console.print(
                f"[red]the {wanted} strategy needs {option} NAME[:VERSION] (`vicap models list`)[/]"
            )
            return 2
        try:
            if wanted == MODEL_STRATEGY:
                model, meta = registry.load(tag)
            else:
                policy = registry.load_policy(tag)
        except Exception as exc:  # bentoml raises its own NotFound
            console.print(f"[red]{tag}: no such registered {wanted} ({exc})[/]")
            return 2
    observed = policy[2].get("observed_model") if policy else None
    if observed and model is None:
        model = registry.load(observed)[0]  # the policy reads its outputs; no model strategy runs
    elif observed and observed != meta["tag"]:
        console.print(f"[red]the policy observes {observed}'s outputs: run it with --model {observed}[/]")
        return 2
    ds = _read(settings, meta["feature_service"] if meta else "vi_rebound_v1")
    if policy is not None:
        registry.check_features(policy[2], ds.tabular)
    days = _period(ds, meta or (policy[2] if policy else None), start, end, purge_days)
    if not days:
        named = (meta or (policy[2] if policy else {}) or {}).get("test_days")
        asked = f"{start or '...'} .. {end or '...'}" if start or end else f"the test days {named}"
        console.print(
            f"[red]no trading day of {paths.root} ({ds.days[0]} .. {ds.days[-1]}) falls in {asked}: "
            "name a period with --from/--to, or a model trained on this data root[/]"
        )
        return 2
    if MODEL_STRATEGY in strategies and threshold is None:
        threshold, where = chosen_threshold(settings, model, meta, ds)
        console.print(f"model threshold {threshold:.3f}, {where}")
    events, table = load_events(paths.events, paths.instruments, days[0], days[-1])
    if only_events is not None:
        events = [e for e in events if e.event_id in only_events]
    part = ds.on_days(days)
    frame = part.frame[["event_id", "decision_offset_s", "event_timestamp", *part.tabular]].reset_index(
        drop=True
    )
    outputs: list[str] = []
    if model is not None:
        frame = pd.concat([frame, decision_outputs(model, part)], axis=1)
        outputs = list(MODEL_OUTPUTS)
    causes = part.frame.groupby("event_id")["cause"].first()
    groups = table[["event_id", "vi_type", "direction"]].assign(
        cause=lambda t: t["event_id"].map(causes),
        direction=lambda t: t["direction"].map({1: "up", -1: "down"}),
    )
    t0 = time.perf_counter()
    windows = event_tapes(paths.raw, paths.instruments, events, BacktestConfig().window_s + EXIT_GRACE_S)
    reading = time.perf_counter() - t0

    def tapes(ev):
        return windows[ev.event_id]

    infos = {e.event_id: e for e in events}
    decisions = as_decisions(frame, infos, part.tabular, outputs, tapes)
    events = [e for e in events if e.event_id in decisions]
    execution = ExecutionConfig(
        int(latency_ms * 1000),
        int(response_ms * 1000),
        QueueModel(queue_model),
        brokerage_rate=settings.brokerage_rate,
    )
    console.print(
        f"backtest over {len(events):,} VIs of {days[0]} .. {days[-1]} ({len(days)} days); latency "
        f"{latency_ms:g} ms in, {response_ms:g} ms back; queue model {queue_model}"
    )
    runs = {}
    t0 = time.perf_counter()
    for latency_name, cfg in (("configured", execution), ("zero", execution.zero_latency())):
        bt = Backtester(tapes, BacktestConfig(cfg))
        for name in strategies:
            if name == POLICY_STRATEGY:
                strategy = _policy_strategy(*policy)
            else:
                kwargs = (
                    {"threshold": threshold, "label": f"model ({model_tag})"}
                    if name == MODEL_STRATEGY
                    else {}
                )
                strategy = make_strategy(name, **kwargs)
            runs[(strategy.name, latency_name)] = bt.run(strategy, events, decisions, show_progress=True)
    seconds = time.perf_counter() - t0
    rows = sum(r.rows_replayed for r in runs.values())
    console.print(
        f"replayed {rows:,} market events in {seconds:.1f} s ({rows / seconds:,.0f} a second, every run); "
        f"reading the tapes took {reading:.1f} s"
    )
    runs |= extra_runs or {}
    result = compare_runs(runs, groups, days, BacktestConfig(execution).capital)
    run_name = run_name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.reports / "backtest" / run_name
    out.mkdir(parents=True, exist_ok=True)
    configured = [r for (_, lat), r in runs.items() if lat == "configured"]
    pd.concat([r.trades_frame() for r in configured]).to_parquet(out / "trades.parquet", index=False)
    pd.concat([r.equity_frame() for r in configured]).to_parquet(out / "equity.parquet", index=False)
    result["meta"] = {
        "run": run_name,
        "days": [d.isoformat() for d in days],
        "events": len(events),
        "latency_ms": latency_ms,
        "response_ms": response_ms,
        "queue_model": queue_model,
        "model": meta.get("tag") if meta else None,
        "policy": policy[2]["tag"] if policy else None,
        "threshold": threshold,
        "replay_events_per_s": rows / seconds,
    }
    (out / "metrics.json").write_text(json.dumps(result["json"], indent=1, default=str), encoding="utf-8")
    page = write_report(result, runs, paths.reports / "backtest", run_name)
    print_comparison(result, f"net of costs, {len(events)} VIs, {days[0]} .. {days[-1]}")
    console.print(f"trades: {out / 'trades.parquet'}\nreport: {page}")
    return 0


def chosen_threshold(settings: Settings, model, meta: dict, ds=None) -> tuple[float, str]:
    """The model strategy's threshold, chosen on the model's validation days (the backtest's and the
    live executor's), and where it came from."""
    from training.pipeline import validation_threshold
    from vicap.train_cmd import _read

    ds = ds if ds is not None else _read(settings, meta["feature_service"])
    chosen = [d for d in ds.days if d.isoformat() in set(meta.get("validation_days", []))]
    threshold = validation_threshold(model, ds.on_days(chosen))
    if chosen:
        return threshold, f"chosen on the validation days {', '.join(map(str, chosen))}"
    return threshold, "the model's validation days are not in this data root: the calibrated break-even"


def _policy_strategy(greedy, normalizer, meta: dict):
    from training.rl.policy import PolicyStrategy
    from training.rl.simulator import SimConfig

    sim = SimConfig.from_dict(meta["env"]["sim"])
    observe = bool(meta["env"].get("observe_outputs"))
    return PolicyStrategy(greedy, normalizer, sim, label=f"ppo ({meta['tag']})", observe_outputs=observe)


SHOWN = [
    "strategy",
    "latency",
    "trades",
    "win rate",
    "mean net",
    "median net",
    "profit factor",
    "Sharpe (ann.)",
    "Sortino (ann.)",
    "max DD",
    "exposure",
    "turnover/day",
    "net P&L (KRW)",
]
WITH_INTERVALS = ("win rate", "mean net")  # the others' intervals are in the report and metrics.json


def print_comparison(result: dict, title: str) -> None:
    """The comparison table, then each strategy's trades by cause, VI type and direction."""
    wide = Console(width=max(console.width, 200))
    t = Table(title=f"backtest: {title}")
    for c in SHOWN:
        t.add_column(c, justify="left" if c == "strategy" else "right")
    for _, row in result["table"].iterrows():
        t.add_row(*(str(row[c]) if c in WITH_INTERVALS else str(row[c]).split(" [")[0] for c in SHOWN))
    wide.print(t)
    splits = Table(title="by cause, VI type and direction (configured latency): trades, win rate, mean net")
    splits.add_column("strategy")
    cells: dict[str, dict[str, str]] = {}
    for key, m in result["json"].items():
        if not key.endswith("| configured latency"):
            continue
        for column, records in m["by"].items():
            for r in records:
                cell = f"{r['trades']}, {r['win_rate']:.0%}, {r['mean_net_return']:+.2%}"
                cells.setdefault(key.split(" | ")[0], {})[f"{column}={r[column]}"] = cell
    groups = sorted({g for row in cells.values() for g in row})
    for g in groups:
        splits.add_column(g, justify="right")
    for name, row in cells.items():
        splits.add_row(name, *(row.get(g, "") for g in groups))
    wide.print(splits)
