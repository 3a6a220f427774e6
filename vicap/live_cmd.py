"""``vicap live``: the live executor (serving/executor.py) put together from the settings and the
options: a source (a replayed dataset, or the KIS feed), the strategy and model, the risk
manager, a broker (simulated, or a KIS paper or real account), the day's journal, the alerts and
the status page. ``vicap live kill`` pulls the kill switch of a running executor through its
status page; ``vicap live export`` writes a day's journal as Parquet.

``kis-real`` trades real money: it refuses to start without ``--confirm-real``, and shows the
account (masked) and the risk limits it would trade with either way."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vicap.settings import Settings

console = Console()
SOURCES = ("replay", "kis")
BROKERS = ("sim", "kis-paper", "kis-real")


@dataclass(frozen=True)
class LiveOptions:
    source: str = "replay"
    broker: str = "sim"
    day: dt.date | None = None  # replay: the dataset's day (default: its last)
    codes: tuple[str, ...] = ()  # default: every stock of the day (replay), the stocks file's (kis)
    start: dt.time | None = None
    end: dt.time | None = None
    speed: float = 1.0  # replay: times the real pace (0: as fast as it goes)
    strategy: str = "model"
    model: str | None = None  # default VICAP_SERVE_MODEL
    threshold: float | None = None  # the model strategy's; default: chosen on the validation days
    service_url: str | None = None  # the model service over HTTP; None: in-process
    capital: float = 100_000_000.0
    risk_file: Path | None = None  # JSON of RiskLimits fields
    confirm_real: bool = False
    stocks_file: Path | None = None  # kis: stocks.csv (stock_code, stock_name, market, kospi200)
    stop_us: int | None = None  # kis: when to stop (market clock)
    status_port: int | None = None  # default VICAP_STATUS_PORT (0: no status page)


def mask_account(account: str) -> str:
    cano, _, product = account.partition("-")
    return f"****{cano[-4:]}-{product}" if cano else ""


def outputs_of(prediction) -> dict[str, float]:
    """A :class:`serving.schemas.Prediction` as the strategies read model outputs (MODEL_OUTPUTS)."""
    return {
        "continuation_60s": prediction.continuation_probability,
        "rebound_60s": prediction.rebound_probability,
        "expected_return_60s": prediction.expected_return,
        "entry_second": float(prediction.entry_second),
    }


def in_process_model(settings: Settings, tag: str) -> Callable[[str, int], Mapping[str, float]]:
    from serving.decisions import DecisionService
    from serving.schemas import DecisionKey

    service = DecisionService(settings.paths.feast, settings.online_store.get_secret_value(), tag)
    return lambda eid, k: outputs_of(service.predict(DecisionKey(event_id=eid, decision_offset=k)))


def http_model(
    url: str, token: str | None, timeout_s: float = 1.0
) -> Callable[[str, int], Mapping[str, float]]:
    """The model service over HTTP; a failure (down, slow, 4xx/5xx) raises: the executor places
    no order on it and alerts."""
    import httpx

    from serving.schemas import Prediction

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    def call(eid: str, k: int) -> Mapping[str, float]:
        reply = client.post("/predict", json={"event_id": eid, "decision_offset": k})
        reply.raise_for_status()
        return outputs_of(Prediction.model_validate(reply.json()))

    return call


def build_alerts(settings: Settings):
    from serving.alerts import AlertConfig, Alerts

    config = AlertConfig(
        slack_webhook_url=settings.slack_webhook_url,
        telegram_bot_token=settings.telegram_bot_token,
        telegram_chat_id=settings.telegram_chat_id,
        telegram_api_url=settings.telegram_api_url,
        per_minute=settings.alerts_per_minute,
    )
    secrets = [
        s.get_secret_value()
        for s in (settings.kis_app_key, settings.kis_app_secret, settings.kis_account, settings.status_token)
        if s is not None
    ]
    return Alerts(config, secrets)


def risk_limits(path: Path | None):
    from serving.risk import RiskLimits

    return RiskLimits.model_validate_json(path.read_text(encoding="utf-8")) if path else RiskLimits()


def limits_table(limits, account: str, broker: str) -> Table:
    t = Table(title=f"{broker}: account {account or '(none)'}")
    t.add_column("risk limit")
    t.add_column("value", justify="right")
    for name, value in limits.model_dump().items():
        t.add_row(
            name, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
    return t


def check_options(settings: Settings, o: LiveOptions) -> str:
    """Why these options cannot run ("" when they can)."""
    if o.source not in SOURCES or o.broker not in BROKERS:
        return f"--source is one of {SOURCES}, --broker one of {BROKERS}"
    if o.broker != "sim" and o.source != "kis":
        return "a KIS account trades only on the KIS feed: --source kis with --broker kis-paper or kis-real"
    if o.broker == "kis-paper" and not settings.kis_paper:
        return "--broker kis-paper needs a paper account (VICAP_KIS_PAPER=true)"
    if o.broker == "kis-real":
        if settings.kis_paper:
            return "--broker kis-real needs a real account (VICAP_KIS_PAPER=false)"
        if not o.confirm_real:
            return "kis-real trades real money: run again with --confirm-real"
    if o.broker != "sim" and settings.kis_account is None:
        return "set VICAP_KIS_ACCOUNT (CANO-ACNT_PRDT_CD) to trade through KIS"
    return ""


def _strategy(settings: Settings, o: LiveOptions):
    from backtest.strategies import make_strategy

    if o.strategy != "model":
        return make_strategy(o.strategy), None
    from training import registry
    from vicap.backtest_cmd import chosen_threshold

    tag = o.model or settings.serve_model
    model, meta = registry.load(tag)
    threshold = o.threshold if o.threshold is not None else chosen_threshold(settings, model, meta)[0]
    console.print(f"model {meta['tag']}, threshold {threshold:.3f}")
    return make_strategy("model", threshold=threshold, label=f"model ({meta['tag']})"), meta["tag"]


async def run_session(
    settings: Settings, o: LiveOptions, *, clock_us: Callable[[], int] | None = None, stop=None
) -> dict:
    """One executor session until the source ends (or ``stop`` is set); its journal summary.
    ``clock_us``: the market clock of a KIS source (a fake's replay clock in tests and the demo)."""
    from backtest.execution import ExecutionConfig
    from feature_repo.store import OnlinePusher, open_store, registry_path
    from market import krx
    from market.kis.client import KisRest
    from market.kis.orders import KisOrders
    from serving.brokers import KisBroker, SimBroker
    from serving.executor import Executor, LiveConfig
    from serving.journal import Journal, export_day, journal_path
    from serving.risk import RiskManager
    from serving.sources import KisSource, ReplaySource
    from vicap.record_cmd import kis_config

    strategy, model_tag = _strategy(settings, o)
    limits = risk_limits(o.risk_file)
    account = mask_account(settings.kis_account.get_secret_value()) if settings.kis_account else ""
    if o.broker != "sim":
        console.print(limits_table(limits, account, o.broker))
    execution = ExecutionConfig(brokerage_rate=settings.brokerage_rate)
    async with contextlib.AsyncExitStack() as stack:
        rest = None
        if o.source == "kis":
            clock = clock_us or (lambda: krx.epoch_us(dt.datetime.now(krx.SEOUL)))
            rest = await stack.enter_async_context(KisRest(kis_config(settings), market_now_us=clock))
            stocks = _stocks(settings, o)
            codes = list(o.codes) or sorted(stocks)
            source = KisSource(rest, stocks, codes, clock_us=clock, stop_us=o.stop_us)
            day = krx.seoul_date(clock())
        else:
            day = o.day or _last_day(settings)
            codes = list(o.codes) or _codes(settings, day)
            source = ReplaySource(settings.paths.raw, day, codes, o.speed, o.start, o.end)
        krx.session_schedule(day)  # the calendar loads once (seconds), before the first tick
        tapes: dict = {}
        if o.broker == "sim":
            broker = SimBroker(tapes.get, execution, o.capital)
        else:
            markets = {c: r["market"] for c, r in stocks.items()}  # a KIS broker trades on the KIS feed only
            broker = KisBroker(KisOrders(rest), markets.__getitem__, execution, name=o.broker)
        model = None
        if model_tag:
            token = settings.service_token.get_secret_value() if settings.service_token else None
            model = (
                http_model(o.service_url, token) if o.service_url else in_process_model(settings, model_tag)
            )
        push = None
        if registry_path(settings.paths.feast).exists():
            store = open_store(settings.paths.feast, settings.online_store.get_secret_value())
            push = OnlinePusher(store).push
        elif model is not None:
            raise ValueError(f"{settings.paths.feast}: no Feast repo (run `vicap features apply` first)")
        journal = Journal(journal_path(settings.paths.journal, day))
        stack.callback(journal.close)
        alerts = build_alerts(settings)
        stack.callback(alerts.close)
        mode = {"source": o.source, "broker": o.broker, "account": account}
        ex = Executor(
            stock_days=source.stock_days, tapes=tapes, strategy=strategy, risk=RiskManager(limits),
            broker=broker, journal=journal, alerts=alerts, model=model,
            push=push, config=LiveConfig(capital=o.capital), mode=mode, feed_clock=source.feed_clock,
            stamp_us=source.stamp_us,
        )  # fmt: skip
        journal.start_run(krx.epoch_us(dt.datetime.now(krx.SEOUL)), o.source, o.broker, strategy.name)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread
            loop.add_signal_handler(signal.SIGUSR1, ex.kill, "SIGUSR1")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        port = settings.status_port if o.status_port is None else o.status_port
        server = _status_server(ex, settings, port) if port else None
        if server is not None:
            stack.push_async_callback(_stop_server, server, loop.create_task(server.serve()))
            console.print(f"status page: http://{settings.status_host}:{port}/")
        await ex.run(source, stop)
        await broker.close()
        summary = journal.summary()
        summary["latencies_ms"] = [n / 1e6 for n in ex.stats.latencies_ns]
        summary["rows"] = ex.stats.rows
        summary["journal"] = str(journal.path)
        summary["trades"] = journal.table("fills").to_dict("records")
        export_day(journal, settings.paths.reports / "live" / day.isoformat())
    return summary


def _status_server(ex, settings: Settings, port: int):
    import uvicorn

    from serving.status import status_app

    app = status_app(ex, settings.status_token)
    config = uvicorn.Config(app, host=settings.status_host, port=port, log_config=None, access_log=False)
    return uvicorn.Server(config)


async def _stop_server(server, task) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _last_day(settings: Settings) -> dt.date:
    import pyarrow.parquet as pq

    days = pq.read_table(settings.paths.instruments, columns=["date"])["date"].to_pylist()
    if not days:
        raise ValueError(f"{settings.paths.instruments}: no trading day")
    return max(days)


def _codes(settings: Settings, day: dt.date) -> list[str]:
    import pyarrow.parquet as pq

    t = pq.read_table(settings.paths.instruments, columns=["date", "stock_code"]).to_pylist()
    return sorted({r["stock_code"] for r in t if r["date"] == day})


def _stocks(settings: Settings, o: LiveOptions) -> dict[str, dict]:
    """The watchlist's stock rows (name, market, kospi200) for the KIS source."""
    from market.kis.ingest import load_stocks

    if o.stocks_file is None:
        raise ValueError(
            "--source kis needs --stocks-file (stocks.csv: stock_code,stock_name,market,kospi200)"
        )
    stocks = load_stocks(o.stocks_file)
    missing = sorted(set(o.codes) - set(stocks))
    if missing:
        raise ValueError(f"{o.stocks_file}: no row for {', '.join(missing)}")
    return {c: stocks[c] for c in (o.codes or stocks)}


def print_summary(summary: dict) -> None:
    from market import krx

    if summary["trades"]:
        trades = Table(title="trades")
        for c in ("filled", "stock", "side", "qty", "price", "fees", "reason"):
            trades.add_column(c, justify="left" if c in ("stock", "side", "reason") else "right")
        for f in summary["trades"]:
            trades.add_row(
                krx.from_us(int(f["fill_ts"])).strftime("%H:%M:%S.%f")[:-3], f["stock_code"],
                "buy" if f["side"] > 0 else "sell", f"{f['qty']:,}", f"{f['price']:,}",
                f"{f['brokerage'] + f['tax']:,}", f["reason"],
            )  # fmt: skip
        console.print(trades)
    t = Table(title=f"journal {summary['journal']}")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for name in ("rows", "vis", "signals", "orders", "fills", "refusals", "kills"):
        t.add_row(name, f"{summary[name]:,}")
    t.add_row("order states", json.dumps(summary["order_states"]))
    t.add_row("fees (KRW)", f"{summary['fees']:,}")
    t.add_row("net P&L (KRW)", f"{summary['net_pnl']:,.0f}")
    t.add_row(
        "open positions", json.dumps(summary["open_positions"]) if summary["open_positions"] else "none"
    )
    if summary["latencies_ms"]:
        lat = summary["latencies_ms"]
        t.add_row(
            "tick to order (ms)",
            f"median {statistics.median(lat):.1f}, max {max(lat):.1f} ({len(lat)} orders from decisions)",
        )
    console.print(t)


def run_live(settings: Settings, o: LiveOptions) -> int:
    why = check_options(settings, o)
    if o.broker == "kis-real":
        account = mask_account(settings.kis_account.get_secret_value()) if settings.kis_account else ""
        console.print(limits_table(risk_limits(o.risk_file), account, o.broker))
    if why:
        console.print(f"[red]{why}[/]")
        return 2
    try:
        summary = asyncio.run(run_session(settings, o))
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    print_summary(summary)
    return 0


def run_kill(settings: Settings, reason: str, port: int | None) -> int:
    import httpx

    if settings.status_token is None:
        console.print("[red]set VICAP_STATUS_TOKEN (the running executor's) to pull its kill switch[/]")
        return 2
    url = f"http://{settings.status_host}:{port or settings.status_port}/api/kill"
    headers = {"Authorization": f"Bearer {settings.status_token.get_secret_value()}"}
    try:
        reply = httpx.post(url, json={"reason": reason}, headers=headers, timeout=5)
    except httpx.TransportError as exc:
        console.print(f"[red]no executor answers at {url}: {type(exc).__name__}[/]")
        return 1
    console.print(f"{url} -> {reply.status_code} {reply.text}")
    return 0 if reply.status_code == 200 else 1


def run_export(settings: Settings, day: dt.date) -> int:
    from serving.journal import Journal, export_day, journal_path

    path = journal_path(settings.paths.journal, day)
    if not path.exists():
        console.print(f"[red]{path}: no journal for {day}[/]")
        return 2
    journal = Journal(path)
    written = export_day(journal, settings.paths.reports / "live" / day.isoformat())
    journal.close()
    for name, p in written.items():
        console.print(f"{name}: {p}")
    return 0


def run_compare(
    settings: Settings, day: dt.date, strategy: str | None, model: str | None, capital: float
) -> int:
    """The day's journal beside a backtest of the same strategy on the same VIs, in one backtest
    report (``data/reports/backtest/live-<day>/``): what live trading did against what the
    execution model says it would have."""
    from serving.journal import Journal, as_run, journal_path
    from vicap.backtest_cmd import BacktestOptions, run_backtest

    path = journal_path(settings.paths.journal, day)
    if not path.exists():
        console.print(f"[red]{path}: no journal for {day}[/]")
        return 2
    journal = Journal(path)
    recorded = journal.db.execute("SELECT strategy FROM runs ORDER BY run DESC LIMIT 1").fetchone()
    run = as_run(journal, capital)
    journal.close()
    name = strategy or (recorded[0] if recorded else "")
    if name.startswith("model ("):  # the journal names the model strategy with its model's tag
        name, model = "model", model or name[len("model (") : -1]
    if not run.events:
        console.print(f"[red]{path}: no released VI journaled: nothing to compare[/]")
        return 2
    run, ids = _matched(settings, run)
    run.marks.update(_day_end_marks(settings, run, day))
    # the live simulated broker's constant latency, so that the two differ only where the data does
    options = BacktestOptions(
        (name,), model, start=day.isoformat(), end=day.isoformat(), latency="constant", run_name=f"live-{day}"
    )
    return run_backtest(options, settings, extra_runs={(run.strategy, "configured"): run}, only_events=ids)


def _day_end_marks(settings: Settings, run, day: dt.date) -> dict[str, tuple[int, int]]:
    """What each position the journal still holds was worth at the day's last row: its bid (the
    recorded tape's, as the backtest marks its own)."""
    from backtest.tapestore import TapeStore

    held = [code for code, q in run.account.positions.items() if q]
    if not held:
        return {}
    store = TapeStore(settings.paths.raw, settings.paths.instruments)
    return {code: (int(store(code, day).mark[-1]), int(store(code, day).ts[-1])) for code in held}


def _matched(settings: Settings, run):
    """The live run with its VIs named as the data root's events table names them, and those ids.
    The KIS feed stamps whole seconds, so a VI detected live may carry a trigger time up to a
    second from the recorded one: matched by stock and trigger time within 2 s."""
    import dataclasses

    import pandas as pd

    from market import krx

    table = pd.read_parquet(settings.paths.events, columns=["event_id", "stock_code", "trigger_ts"])
    table["trigger_us"] = krx.series_us(table["trigger_ts"]).to_numpy()
    names = {}
    for e in run.events:
        mine = table[
            (table["stock_code"] == e.stock_code) & ((table["trigger_us"] - e.trigger_ts).abs() < 2_000_000)
        ]
        if len(mine):
            names[e.event_id] = mine["event_id"].iloc[0]
    fills = [dataclasses.replace(f, event_id=names.get(f.event_id, f.event_id)) for f in run.fills]
    events = [dataclasses.replace(e, event_id=names.get(e.event_id, e.event_id)) for e in run.events]
    return dataclasses.replace(run, fills=fills, events=events), set(names.values())
