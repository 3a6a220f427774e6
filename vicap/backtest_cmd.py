"""``vicap backtest``: strategies over a period's VI events on the KRX execution model, each with
the configured latency and with none, into ``reports/backtest/<run>/`` (trades, lots, equity,
metrics, its page) and the list of every run, ``reports/backtest/index.html``."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from vicap.settings import Settings, get_settings

console = Console()
RULE_STRATEGIES = ("buy-and-hold", "rule-momentum", "rule-rebound")
MODEL_STRATEGY = "model"
POLICY_STRATEGY = "ppo"
LATENCIES = ("kis", "constant")  # or journal:PATH
BROKERS = ("direct", "kis-paper", "kis-real")


@dataclass(frozen=True)
class BacktestOptions:
    """What ``vicap backtest`` runs, and how the market and the broker are modelled.

    ``latency``: ``kis`` (the KIS order round trip distribution of ``backtest.latency``), ``constant``
    (``latency_ms`` in, ``response_ms`` back) or ``journal:PATH`` (a live journal's measured round
    trips). ``broker``: ``direct`` (no pacing), ``kis-paper`` / ``kis-real`` (KIS's REST budget,
    fills seen by ``fills_by``: the order inquiry or the fill notice). ``feed_latency_ms``: the
    exchange-to-us latency of the data's two clocks (``backtest.clock``)."""

    strategies: tuple[str, ...]
    model_tag: str | None = None
    policy_tag: str | None = None
    start: str | None = None
    end: str | None = None
    purge_days: int = 1
    latency: str = "kis"
    latency_ms: float = 30.0
    response_ms: float = 30.0
    broker: str = "direct"
    fills_by: str = "inquiry"
    feed_latency_ms: float = 20.0
    queue_model: str = "risk_averse"
    threshold: float | None = None
    run_name: str | None = None
    seed: int = 0

    def check(self) -> str:
        if self.latency not in LATENCIES and not self.latency.startswith("journal:"):
            return f"--latency must be kis, constant or journal:PATH, got {self.latency!r}"
        if self.broker not in BROKERS:
            return f"--broker must be one of {', '.join(BROKERS)}, got {self.broker!r}"
        if self.fills_by not in ("inquiry", "notice"):
            return f"--fills-by must be inquiry or notice, got {self.fills_by!r}"
        return ""

    def execution(self, brokerage_rate: float):
        from backtest.execution import ExecutionConfig, QueueModel
        from backtest.latency import KIS_ORDER_LATENCY, KisPacing, RecordedLatency

        model = None
        if self.latency == "kis":
            model = KIS_ORDER_LATENCY
        elif self.latency.startswith("journal:"):
            model = RecordedLatency.from_journal(Path(self.latency.split(":", 1)[1]))
        pacing = None
        if self.broker != "direct":
            pacing = (KisPacing.paper if self.broker == "kis-paper" else KisPacing.real)(self.fills_by)
        return ExecutionConfig(
            int(self.latency_ms * 1000), int(self.response_ms * 1000), QueueModel(self.queue_model),
            brokerage_rate=brokerage_rate, latency=model, pacing=pacing, seed=self.seed,
        )  # fmt: skip

    def feed_clock(self):
        from backtest.clock import FeedClock

        return FeedClock(int(self.feed_latency_ms * 1000))


def _period(ds, meta: dict | None, start: str | None, end: str | None, purge_days: int) -> list[dt.date]:
    from training.pipeline import Split

    if start or end:
        lo = dt.date.fromisoformat(start) if start else ds.days[0]
        hi = dt.date.fromisoformat(end) if end else ds.days[-1]
        return [d for d in ds.days if lo <= d <= hi]
    if meta and meta.get("test_days"):  # a model trained on another data root may name days not here
        return [d for d in ds.days if d.isoformat() in set(meta["test_days"])]
    return list(Split.of(ds, purge_days=purge_days).fold.test)


def _load(o: BacktestOptions):
    """(model, its meta, policy) the options name; raises ValueError with the user's message."""
    from training import registry

    model, meta, policy = None, None, None
    for wanted, tag, option in (
        (MODEL_STRATEGY, o.model_tag, "--model"),
        (POLICY_STRATEGY, o.policy_tag, "--policy"),
    ):
        if wanted not in o.strategies:
            continue
        if not tag:
            raise ValueError(f"the {wanted} strategy needs {option} NAME[:VERSION] (`vicap models list`)")
        try:
            if wanted == MODEL_STRATEGY:
                model, meta = registry.load(tag)
            else:
                policy = registry.load_policy(tag)
        except Exception as exc:  # bentoml raises its own NotFound
            raise ValueError(f"{tag}: no such registered {wanted} ({exc})") from exc
    observed = policy[2].get("observed_model") if policy else None
    if observed and model is None:
        model = registry.load(observed)[0]  # the policy reads its outputs; no model strategy runs
    elif observed and observed != meta["tag"]:
        raise ValueError(f"the policy observes {observed}'s outputs: run it with --model {observed}")
    return model, meta, policy


def run_backtest(
    o: BacktestOptions,
    settings: Settings | None = None,
    extra_runs: dict | None = None,
    only_events: set[str] | None = None,
) -> int:
    """``extra_runs``: {(name, "configured"): RunResult} set beside the backtest's in the report (a
    live day's journal: each of its fills is matched with the backtest's); ``only_events``:
    backtest these VIs only (the live day's)."""
    from backtest.data import load_events
    from backtest.engine import BacktestConfig, Backtester, as_decisions
    from backtest.metrics import compare_runs
    from backtest.report import fill_differences, write_report
    from backtest.strategies import MODEL_OUTPUTS
    from backtest.tapestore import TapeStore
    from training.pipeline import decision_outputs
    from vicap.train_cmd import _read

    settings = settings or get_settings()
    paths = settings.paths
    try:
        if why := o.check():
            raise ValueError(why)
        model, meta, policy = _load(o)
        execution = o.execution(settings.brokerage_rate)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    ds = _read(settings, meta["feature_service"] if meta else "vi_rebound_v1")
    if policy is not None:
        from training import registry

        registry.check_features(policy[2], ds.tabular)
    days = _period(ds, meta or (policy[2] if policy else None), o.start, o.end, o.purge_days)
    if not days:
        named = (meta or (policy[2] if policy else {}) or {}).get("test_days")
        asked = f"{o.start or '...'} .. {o.end or '...'}" if o.start or o.end else f"the test days {named}"
        console.print(
            f"[red]no trading day of {paths.root} ({ds.days[0]} .. {ds.days[-1]}) falls in {asked}: "
            "name a period with --from/--to, or a model trained on this data root[/]"
        )
        return 2
    threshold = o.threshold
    if MODEL_STRATEGY in o.strategies and threshold is None:
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
    decisions = as_decisions(frame, {e.event_id: e for e in events}, part.tabular, outputs)
    events = [e for e in events if e.event_id in decisions]
    tapes = TapeStore(paths.raw, paths.instruments, clock=o.feed_clock())
    t0 = time.perf_counter()
    for key in sorted({(e.stock_code, e.day) for e in events}):
        tapes(*key)  # built once into the cache (then memory-mapped)
    reading = time.perf_counter() - t0
    console.print(
        f"backtest over {len(events):,} VIs of {days[0]} .. {days[-1]} ({len(days)} days); "
        f"{execution.describe()}; feed latency {o.feed_latency_ms:g} ms; queue model {o.queue_model}"
    )
    runs = {}
    t0 = time.perf_counter()
    for latency_name, cfg in (("configured", execution), ("zero", execution.zero_latency())):
        bt = Backtester(tapes, BacktestConfig(cfg))
        for name in o.strategies:
            strategy = _strategy(name, threshold, o.model_tag, policy)
            runs[(strategy.name, latency_name)] = bt.run(strategy, events, decisions, show_progress=True)
    seconds = time.perf_counter() - t0
    rows = sum(r.rows_replayed for r in runs.values())
    console.print(
        f"replayed {rows:,} market events in {seconds:.1f} s ({rows / seconds:,.0f} a second, every run); "
        f"opening the tapes took {reading:.1f} s ({tapes.built} stock-days built into the cache)"
    )
    runs |= extra_runs or {}
    result = compare_runs(runs, groups, days, BacktestConfig(execution).capital)
    run_name = o.run_name or dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.reports / "backtest" / run_name
    out.mkdir(parents=True, exist_ok=True)
    configured = [r for (_, lat), r in runs.items() if lat == "configured"]
    pd.concat([r.trades_frame() for r in configured]).to_parquet(out / "trades.parquet", index=False)
    pd.concat([r.lots_frame() for r in configured]).to_parquet(out / "lots.parquet", index=False)
    pd.concat([r.equity_frame() for r in configured]).to_parquet(out / "equity.parquet", index=False)
    if extra_runs:
        ours = [r for (_, lat), r in runs.items() if lat == "configured" and r not in extra_runs.values()]
        result["differences"] = {
            extra.strategy: fill_differences(extra, ours[0]) for extra in extra_runs.values() if ours
        }
    result["meta"] = {
        "run": run_name,
        "written": dt.datetime.now().isoformat(timespec="seconds"),
        "days": [d.isoformat() for d in days],
        "events": len(events),
        "execution": execution.describe(),
        "feed_latency_ms": o.feed_latency_ms,
        "queue_model": o.queue_model,
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


def _strategy(name: str, threshold: float | None, model_tag: str | None, policy):
    from backtest.strategies import make_strategy

    if name == POLICY_STRATEGY:
        return _policy_strategy(*policy)
    kwargs = {"threshold": threshold, "label": f"model ({model_tag})"} if name == MODEL_STRATEGY else {}
    return make_strategy(name, **kwargs)


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
    "open at end",
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
    for live, diff in result.get("differences", {}).items():
        if len(diff):
            wide.print(f"[bold]{live} beside the backtest, fill by fill[/]")
            wide.print(diff.to_string(index=False))
