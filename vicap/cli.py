"""The ``vicap`` command. Imports stay inside the commands: feast, ray and torch are slow to load."""

from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="vicap: KRX Volatility Interruption (VI, 변동성완화장치) capture, learning and trading.",
)


@app.command()
def demo(seed: int = typer.Option(7, help="random seed of the demo session")) -> None:
    """Run the end-to-end demo on the embedded default (what exists so far)."""
    from vicap.demo import run_demo

    raise typer.Exit(run_demo(seed=seed))


@app.command()
def generate(
    out: Path = typer.Option(..., help="dataset root to write (ticks/, instruments.parquet, vi_log.parquet)"),
    stocks: int = typer.Option(20, min=1, help="number of stocks"),
    days: int = typer.Option(10, min=1, help="number of XKRX trading days"),
    seed: int = typer.Option(7, help="random seed: same seed and arguments, byte-identical output"),
    start: str = typer.Option("2024-01-02", help="first day (YYYY-MM-DD; the next session if a holiday)"),
    vi_intensity: str = typer.Option("normal", help="normal (~5 VIs per stock-year) or hot (many a day)"),
    edge: str = typer.Option(
        "low",
        help="how predictable a VI's aftermath is: low (no free lunch: the default) or high (a strong "
        "signal for pipeline tests); synthetic results measure the pipeline, not the market",
    ),
    jobs: int = typer.Option(0, help="parallel processes (0: one per core)"),
    ray_address: str = typer.Option(
        None,
        help="Ray cluster to run the stock-days on ('local': a private one); default VICAP_RAY_ADDRESS",
    ),
) -> None:
    """Generate a synthetic KRX market with emergent VI events (the embedded default data)."""
    from vicap.generate_cmd import run_generate
    from vicap.settings import get_settings

    ray_address = ray_address or get_settings().ray_address
    jobs = jobs or os.cpu_count() or 1
    run_generate(out, stocks, days, seed, _parse_date(start), vi_intensity, jobs, ray_address, edge)


@app.command("market-check")
def market_check(
    dataset: Path = typer.Argument(..., help="dataset root (ticks/, instruments.parquet, vi_log.parquet)"),
) -> None:
    """Measure stylized facts and invariants; write data/reports/market/index.html.
    Exits non-zero when an invariant is broken."""
    from vicap.market_check_cmd import run_market_check

    raise typer.Exit(run_market_check(dataset))


@app.command()
def ingest(
    src: Path = typer.Argument(..., help="a file, or a folder of files, to read"),
    format: str = typer.Option(..., "--format", help="parquet | csv | kis-log"),
    mapping: list[Path] = typer.Option(
        None,
        help="a layout's YAML mapping, or a folder of them (market/vendor/mappings/); repeat for "
        "several; none: vicap's own tick schema",
    ),
    out: Path = typer.Option(..., help="dataset root to write"),
    instruments: Path = typer.Option(
        None,
        help="instruments.parquet to use instead of deriving one, or a stock list CSV (stock_code, "
        "stock_name, market, kospi200) for layouts without names and markets; for kis-log, the "
        "stock list (default: stocks.csv beside the recordings)",
    ),
) -> None:
    """Ingest vendor tick files or KIS real-time recordings into the vicap dataset, quarantine
    unreadable rows and frames with the reason, then validate."""
    from vicap.ingest_cmd import run_ingest

    raise typer.Exit(run_ingest(src, format, mapping, out, instruments))


@app.command()
def validate(
    dataset: Path = typer.Argument(..., help="dataset root (ticks/, instruments.parquet[, vi_log.parquet])"),
    jobs: int = typer.Option(0, help="parallel processes (0: one per core)"),
    ray_address: str = typer.Option(
        None,
        help="Ray cluster to validate the partitions on ('local': a private one); default VICAP_RAY_ADDRESS",
    ),
) -> None:
    """Validate ticks and the VI log with Great Expectations. The raw files are never written: the
    verdict (rejected rows with their reason in quarantine/ticks/, validation_summary.json) lies
    beside them and later stages read the accepted rows. Writes data/reports/validation/index.html
    and Data Docs. Exits 1 when a file is unreadable or not in the tick schema, or counts do not add up."""
    from vicap.settings import get_settings
    from vicap.validate_cmd import run_validate

    ray_address = ray_address or get_settings().ray_address
    raise typer.Exit(run_validate(dataset, jobs or os.cpu_count() or 1, ray_address))


@app.command()
def events(
    dataset: Path = typer.Argument(..., help="dataset root (ticks/, instruments.parquet[, vi_log.parquet])"),
    out: Path = typer.Option(..., help="folder for events.parquet and windows.parquet"),
    rules_only: bool = typer.Option(
        False, help="ignore the exchange's VI flags; detect by the KRX rules alone"
    ),
    before: int = typer.Option(30, min=0, help="panel seconds before the trigger"),
    after: int = typer.Option(30, min=0, help="panel seconds after the release"),
) -> None:
    """Detect VIs (events.parquet, with agreement against the VI log) and build their 1-second
    panels (windows.parquet)."""
    from vicap.events_cmd import run_events

    raise typer.Exit(run_events(dataset, out, use_flags=not rules_only, before_s=before, after_s=after))


@app.command("kis-export")
def kis_export(
    dataset: Path = typer.Argument(..., help="tick dataset root (e.g. from `vicap generate`)"),
    out: Path = typer.Option(..., help="folder for the recording, the VI-status response and stocks.csv"),
    date: str = typer.Option(..., help="the trading day to record (YYYY-MM-DD)"),
    stock: list[str] = typer.Option(None, help="stock code to subscribe (repeatable; default all)"),
    start: str = typer.Option(None, "--from", help="first exchange time to keep (HH:MM:SS)"),
    end: str = typer.Option(None, "--to", help="last exchange time to keep (HH:MM:SS)"),
    seed: int = typer.Option(0, help="seed of the simulated receive latency"),
) -> None:
    """Write a dataset's day as a KIS WebSocket recording in the documented frame formats (what
    `vicap ingest --format kis-log` reads)."""
    import datetime as dt

    from market.kis.export import export_recording
    from market.krx.dataset import IngestError

    try:
        counts = export_recording(
            dataset,
            out,
            _parse_date(date),
            stock or None,
            dt.time.fromisoformat(start) if start else None,
            dt.time.fromisoformat(end) if end else None,
            seed,
        )
    except IngestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(", ".join(f"{k} {v:,}" for k, v in counts.items()) + f" written to {out}")


@app.command("record")
def record(
    stock: list[str] = typer.Option(..., help="stock code to record (repeatable; 10 at most: 4 tr_ids each)"),
    out: Path = typer.Option(None, help="recording folder (default <data root>/recordings/kis)"),
    stocks: Path = typer.Option(
        None, help="stocks.csv with the codes' names and markets (as kis-export writes)"
    ),
    until: str = typer.Option(None, help="stop at this Seoul time (HH:MM[:SS])"),
    duration: float = typer.Option(None, help="stop after this many seconds"),
    vi_poll: float = typer.Option(60.0, help="seconds between VI-status polls"),
) -> None:
    """Record the KIS real-time feed of a watchlist (trades, books, program trading, market
    operation) to daily kis-log files, polling the VI status, until a time or for a duration."""
    import datetime as dt

    from vicap.record_cmd import run_record
    from vicap.settings import get_settings

    settings = get_settings()
    target = out or settings.paths.root / "recordings" / "kis"
    raise typer.Exit(
        run_record(
            settings,
            target,
            stock,
            stocks,
            dt.time.fromisoformat(until) if until else None,
            duration,
            vi_poll,
        )
    )


def _parse_date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date in YYYY-MM-DD form") from None


features_app = typer.Typer(
    no_args_is_help=True,
    help="Features and labels in the Feast store (DuckDB offline, SQLite or Redis online).",
)
app.add_typer(features_app, name="features")


@features_app.command("build")
def features_build(
    dataset: Path = typer.Option(
        None, help="tick dataset root (ticks/, instruments.parquet); default: raw/ under VICAP_DATA_DIR"
    ),
    events: Path = typer.Option(
        None, help="events.parquet from `vicap events`; default: events/ under VICAP_DATA_DIR"
    ),
) -> None:
    """Compute every decision's features and labels; write features/ and labels/ under the data
    root; run the feature suites (Great Expectations). Exits 1 when a suite fails."""
    from vicap.features_cmd import run_build
    from vicap.settings import get_settings

    paths = get_settings().paths
    raise typer.Exit(run_build(dataset or paths.raw, events or paths.events))


@features_app.command("apply")
def features_apply() -> None:
    """Register entities, sources, views and services (what `feast apply` does in feature_repo/)."""
    from vicap.features_cmd import run_apply

    raise typer.Exit(run_apply())


@features_app.command("materialize")
def features_materialize(
    start: str = typer.Argument(..., help="first event time to load (ISO 8601; a date is midnight KST)"),
    end: str = typer.Argument(..., help="last event time to load (ISO 8601)"),
) -> None:
    """Load the offline rows stamped in [START, END] into the online store (VICAP_ONLINE_STORE)."""
    from vicap.features_cmd import run_materialize

    raise typer.Exit(run_materialize(_parse_time(start), _parse_time(end)))


@features_app.command("online")
def features_online(
    event_id: str = typer.Argument(..., help="the VI's event_id (<stock_code>-<trigger µs>)"),
    offset: int = typer.Option(0, min=0, max=9, help="decision seconds after the release"),
) -> None:
    """Print one decision's features from the online store (feature service vi_rebound_v1).
    Exits 1 when the store holds nothing for it."""
    from vicap.features_cmd import run_online

    raise typer.Exit(0 if run_online(event_id, offset) is not None else 1)


@features_app.command("list")
def features_list() -> None:
    """The feature list as Markdown (feature_repo/FEATURES.md): name, meaning, nulls, range."""
    from vicap.features_cmd import feature_list_markdown

    typer.echo(feature_list_markdown(), nl=False)


def _parse_clock(text: str):
    """HH:MM[:SS], a time of the trading day (Seoul)."""
    import datetime as dt

    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a time of day (HH:MM[:SS])") from None


def _parse_time(text: str):
    import datetime as dt

    from market.krx import SEOUL

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date or time") from None
    return value if value.tzinfo else value.replace(tzinfo=SEOUL)


_SERVICE_HELP = "feature service: vi_rebound_v1 (all features) or vi_rebound_live_v1 (what KIS live supplies)"
_PURGE_HELP = "trading days left out between train, validation and test"


@app.command()
def train(
    model: str = typer.Option("transformer", help="transformer | lstm | lightgbm"),
    service: str = typer.Option("vi_rebound_v1", help=_SERVICE_HELP),
    epochs: int = typer.Option(8, min=1, help="most epochs (early stopping on the validation loss)"),
    purge_days: int = typer.Option(1, min=0, help=_PURGE_HELP),
    name: str = typer.Option(None, help="Ray Train run name (the same name resumes its checkpoints)"),
    ray_address: str = typer.Option(None, help="Ray cluster to train on; default VICAP_RAY_ADDRESS"),
) -> None:
    """Fit a model on the data root's Feast dataset (last walk-forward fold; neural models with
    Ray Train's TorchTrainer, checkpoints under training/), calibrate it on the validation days and
    register it in the BentoML model store."""
    from vicap.settings import get_settings
    from vicap.train_cmd import run_train

    settings = get_settings()
    address = ray_address or settings.ray_address
    raise typer.Exit(run_train(model, service, epochs, purge_days, address, name, settings))


@app.command()
def tune(
    samples: int = typer.Option(8, "--samples", min=1, help="number of trials"),
    model: str = typer.Option("transformer", help="transformer | lstm"),
    service: str = typer.Option("vi_rebound_v1", help=_SERVICE_HELP),
    epochs: int = typer.Option(6, min=1, help="most epochs per trial (ASHA stops the weak ones early)"),
    purge_days: int = typer.Option(1, min=0, help=_PURGE_HELP),
    ray_address: str = typer.Option(None, help="Ray cluster to run the trials on; default VICAP_RAY_ADDRESS"),
) -> None:
    """Sweep learning rate, width, depth, dropout and loss weights (Ray Tune: Optuna + ASHA, each
    trial a TorchTrainer); write the trial table under reports/model/ and register the best."""
    from vicap.settings import get_settings
    from vicap.train_cmd import run_tune

    settings = get_settings()
    address = ray_address or settings.ray_address
    raise typer.Exit(run_tune(model, samples, service, epochs, purge_days, address, settings))


@app.command()
def evaluate(
    model: str = typer.Option(..., help="registered model, NAME or NAME:VERSION (`vicap models list`)"),
    data_dir: Path = typer.Option(None, help="built data root to score on; default VICAP_DATA_DIR"),
    purge_days: int = typer.Option(1, min=0, help=_PURGE_HELP),
) -> None:
    """Score a registered model on the test period of a data root beside the base rate, a logistic
    regression, LightGBM and (synthetic data) the oracles; write reports/model/metrics.json and
    index.html."""
    from vicap.train_cmd import run_evaluate

    raise typer.Exit(run_evaluate(model, data_dir, purge_days))


models_app = typer.Typer(no_args_is_help=True, help="The registered models (BentoML model store).")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """The registered vicap models, newest first."""
    from vicap.train_cmd import run_models_list

    raise typer.Exit(run_models_list())


rl_app = typer.Typer(
    no_args_is_help=True, help="Reinforcement learning: a PPO policy on the VI trading environment."
)
app.add_typer(rl_app, name="rl")


@rl_app.command("train")
def rl_train(
    iterations: int = typer.Option(20, min=1, help="PPO iterations"),
    horizon_s: int = typer.Option(60, min=2, help="seconds an episode runs from its start"),
    start_s: int = typer.Option(
        0, min=0, max=9, help="the episode's start, seconds after the first decision second"
    ),
    drawdown_weight: float = typer.Option(0.1, min=0, help="penalty on each new low of the drawdown (lots)"),
    batch_steps: int = typer.Option(2_000, min=100, help="environment steps per iteration"),
    purge_days: int = typer.Option(1, min=0, help="days left out between train, validation and test"),
    name: str = typer.Option(None, help="registry name (default vicap-ppo)"),
    ray_address: str = typer.Option(None, help="a Ray cluster to train on ('auto' or ray://...)"),
    env_runners: int = typer.Option(
        0, min=0, help="RLlib env runners sampling in parallel (0: in the driver)"
    ),
    model: str = typer.Option(None, help="a registered model whose outputs the policy also observes"),
) -> None:
    """Train PPO (RLlib, new API stack) on episodes of the data root's VIs, split by time; evaluate
    the greedy policy on the validation and test events beside random, stay-out and
    buy-at-the-release policies; register it in the BentoML model store."""
    from vicap.rl_cmd import run_rl_train
    from vicap.settings import get_settings

    settings = get_settings()
    address = ray_address or settings.ray_address
    raise typer.Exit(
        run_rl_train(
            iterations,
            horizon_s,
            drawdown_weight,
            batch_steps,
            purge_days,
            name,
            address,
            settings,
            env_runners,
            model,
            start_s,
        )
    )


@app.command()
def backtest(
    strategy: list[str] = typer.Option(
        None, help="buy-and-hold | rule-momentum | rule-rebound | model | ppo (repeatable)"
    ),
    compare: bool = typer.Option(
        False, "--compare", help="every rule strategy, and the model one with --model"
    ),
    model: str = typer.Option(None, help="registered model for the model strategy (NAME[:VERSION])"),
    policy: str = typer.Option(None, help="registered PPO policy for the ppo strategy (NAME[:VERSION])"),
    data_dir: Path = typer.Option(None, help="data root (default VICAP_DATA_DIR)"),
    start: str = typer.Option(None, "--from", help="first day (YYYY-MM-DD); default: the test period"),
    end: str = typer.Option(None, "--to", help="last day (YYYY-MM-DD)"),
    purge_days: int = typer.Option(1, min=0, help="purge gap of the default test period (without --model)"),
    latency: str = typer.Option(
        "kis",
        help="order latency each way: kis (a distribution of KIS REST round trips), constant "
        "(--latency-ms in, --response-ms back) or journal:PATH (a live journal's measured round trips)",
    ),
    latency_ms: float = typer.Option(30.0, min=0, help="decision to exchange, ms (with --latency constant)"),
    response_ms: float = typer.Option(30.0, min=0, help="exchange to us, ms (with --latency constant)"),
    broker: str = typer.Option(
        "direct",
        help="direct | kis-paper | kis-real: KIS's REST pacing (500 / 50 ms a call) and fill reports",
    ),
    fills_by: str = typer.Option("inquiry", help="with a KIS broker: inquiry (polled) | notice (pushed)"),
    feed_latency_ms: float = typer.Option(
        20.0, min=0, help="exchange to us, ms: a row is seen no earlier (and KIS stamps are placed by it)"
    ),
    queue_model: str = typer.Option("risk_averse", help="risk_averse | probabilistic"),
    threshold: float = typer.Option(
        None,
        min=0,
        max=1,
        help="the model strategy's probability threshold (default: chosen on validation days)",
    ),
    run: str = typer.Option(None, help="run name under reports/backtest/ (default: the time)"),
    seed: int = typer.Option(0, help="of the latency draws"),
) -> None:
    """Backtest strategies over a period's VI events on the KRX execution model (two clocks,
    latency, book walking, VI bands, queues, call auctions, costs); write
    reports/backtest/<run>/ (trades, lots, equity, metrics, its page) and the list of every run,
    reports/backtest/index.html, and print the comparison."""
    from vicap.backtest_cmd import (
        MODEL_STRATEGY,
        POLICY_STRATEGY,
        RULE_STRATEGIES,
        BacktestOptions,
        run_backtest,
    )
    from vicap.settings import get_settings

    names = list(strategy or [])
    if compare:
        extra = [*([MODEL_STRATEGY] if model else []), *([POLICY_STRATEGY] if policy else [])]
        names = list(dict.fromkeys([*RULE_STRATEGIES, *extra, *names]))
    if not names:
        raise typer.BadParameter("name a --strategy, or use --compare")
    options = BacktestOptions(
        tuple(names), model, policy, start, end, purge_days, latency, latency_ms, response_ms, broker,
        fills_by, feed_latency_ms, queue_model, threshold, run, seed,
    )  # fmt: skip
    raise typer.Exit(run_backtest(options, get_settings(data_dir=data_dir) if data_dir else get_settings()))


@app.command()
def serve(
    model: str = typer.Option(None, help="registered model for /predict (default VICAP_SERVE_MODEL)"),
    policy: str = typer.Option(
        None, help="registered policy for /act ('' for none; default VICAP_SERVE_POLICY)"
    ),
    host: str = typer.Option(None, help="bind address (default VICAP_SERVE_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default VICAP_SERVE_PORT, 3000)"),
    data_dir: Path = typer.Option(None, help="data root whose Feast online store it reads"),
) -> None:
    """Serve /predict, /act, /metadata and /healthz over HTTP (BentoML; `bentoml serve
    vicap.service:VICap` is the same service). VICAP_SERVICE_TOKEN, when set, is the bearer token."""
    from vicap.serve_cmd import run_serve

    raise typer.Exit(run_serve(model, policy, host, port, data_dir))


live_app = typer.Typer(
    no_args_is_help=False,
    help="The live executor: feed, VI detector, features, model, strategy, risk, broker, journal.",
)
app.add_typer(live_app, name="live")


@live_app.callback(invoke_without_command=True)
def live(
    ctx: typer.Context,
    source: str = typer.Option("replay", help="replay (a dataset of data/raw) or kis (the KIS feed)"),
    broker: str = typer.Option("sim", help="sim (backtest's execution model), kis-paper or kis-real"),
    day: str = typer.Option(None, help="replay: the day (YYYY-MM-DD; default the data's last)"),
    stocks: str = typer.Option(
        None, help="comma-separated stock codes (default: the day's, or the stocks file's)"
    ),
    start: str = typer.Option(None, "--from", help="replay from this exchange time (HH:MM[:SS])"),
    end: str = typer.Option(None, "--to", help="replay up to this exchange time (HH:MM[:SS])"),
    speed: float = typer.Option(1.0, min=0, help="replay speed, times the real pace (0: as fast as it goes)"),
    strategy: str = typer.Option("model", help="model, rule-momentum, rule-rebound or buy-and-hold"),
    model: str = typer.Option(None, help="registered model (default VICAP_SERVE_MODEL)"),
    threshold: float = typer.Option(
        None, help="model strategy threshold (default: chosen on validation days)"
    ),
    service: str = typer.Option(None, help="the model service's URL (vicap serve); default: in-process"),
    capital: float = typer.Option(100_000_000.0, help="KRW the account starts with (sim)"),
    risk: Path = typer.Option(None, help="a JSON file of risk limits (serving/risk.py RiskLimits fields)"),
    stocks_file: Path = typer.Option(None, help="kis: stocks.csv (stock_code,stock_name,market,kospi200)"),
    until: str = typer.Option(None, help="kis: stop at this time today (HH:MM)"),
    status_port: int = typer.Option(None, help="status page port (default VICAP_STATUS_PORT; 0: off)"),
    confirm_real: bool = typer.Option(False, "--confirm-real", help="kis-real: yes, trade real money"),
) -> None:
    """Run the live executor (a replay through the simulated broker by default)."""
    if ctx.invoked_subcommand is not None:
        return
    from vicap.live_cmd import LiveOptions, run_live
    from vicap.record_cmd import stop_time
    from vicap.settings import get_settings

    settings = get_settings()
    stop_us = None
    if until:
        import datetime as dt

        from market import krx

        stop_us = stop_time(_parse_clock(until), None, krx.epoch_us(dt.datetime.now(krx.SEOUL)))
    options = LiveOptions(
        source=source, broker=broker, day=_parse_date(day) if day else None,
        codes=tuple(c.strip() for c in stocks.split(",")) if stocks else (),
        start=_parse_clock(start) if start else None, end=_parse_clock(end) if end else None,
        speed=speed, strategy=strategy, model=model, threshold=threshold, service_url=service,
        capital=capital, risk_file=risk, confirm_real=confirm_real, stocks_file=stocks_file,
        stop_us=stop_us, status_port=status_port,
    )  # fmt: skip
    raise typer.Exit(run_live(settings, options))


@live_app.command("kill")
def live_kill(
    reason: str = typer.Option("kill switch (vicap live kill)", help="why (journaled and alerted)"),
    port: int = typer.Option(None, help="the executor's status port (default VICAP_STATUS_PORT)"),
) -> None:
    """Pull the kill switch of a running executor: cancel its open orders, refuse new ones."""
    from vicap.live_cmd import run_kill
    from vicap.settings import get_settings

    raise typer.Exit(run_kill(get_settings(), reason, port))


@live_app.command("export")
def live_export(day: str = typer.Option(..., help="the journal's day (YYYY-MM-DD)")) -> None:
    """Write a day's journal as Parquet under data/reports/live/<day>/ (trades in the backtest's columns)."""
    from vicap.live_cmd import run_export
    from vicap.settings import get_settings

    raise typer.Exit(run_export(get_settings(), _parse_date(day)))


@live_app.command("compare")
def live_compare(
    day: str = typer.Option(..., help="the journal's day (YYYY-MM-DD)"),
    strategy: str = typer.Option(None, help="the backtest's strategy (default: the journal's)"),
    model: str = typer.Option(None, help="the model strategy's model (default: the journal's)"),
    capital: float = typer.Option(100_000_000.0, help="KRW the live account started with"),
) -> None:
    """The day's journal beside a backtest of the same strategy on the same VIs, in one report."""
    from vicap.live_cmd import run_compare
    from vicap.settings import get_settings

    raise typer.Exit(run_compare(get_settings(), _parse_date(day), strategy, model, capital))


@app.command()
def rules() -> None:
    """Print and self-check the KRX rules (ticks, limits, VI bands, taxes, calendar)."""
    from vicap.demo import rules_self_check

    raise typer.Exit(0 if rules_self_check() else 1)


if __name__ == "__main__":
    app()
