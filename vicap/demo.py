"""The end-to-end demo: a synthetic market through validation, VI events, features in Feast,
models (Ray Train, Ray Tune, LightGBM, evaluated beside the base rate and the oracles), a short
PPO training (RLlib) and a backtest of the rule, model, policy and buy-and-hold strategies on the
test events; the KRX rules
self-check and one exchange session with a VI."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from market import krx
from market.exchange.engine import BUY, SELL, Exchange, ExchangeConfig, Instrument
from market.exchange.random_flow import random_order_stream
from market.krx.schema import TICK_SCHEMA, VI_LOG_SCHEMA, check_table
from vicap.settings import get_settings

console = Console()


def _rule_checks() -> list[tuple[str, object, object]]:
    """(what, computed, expected from krx-market-rules.md)."""
    pre, post = dt.date(2022, 6, 2), dt.date(2024, 6, 3)
    return [
        ("tick 1,999 KRW (2023 table)", krx.tick_size(1_999, "KOSPI", post), 1),
        ("tick 2,000 KRW (2023 table)", krx.tick_size(2_000, "KOSDAQ", post), 5),
        ("tick 199,900 KRW (2023 table)", krx.tick_size(199_900, "KOSPI", post), 100),
        ("tick 500,000 KRW (2023 table)", krx.tick_size(500_000, "KOSPI", post), 1_000),
        ("tick 99,900 KRW KOSPI before 2023-01-25", krx.tick_size(99_900, "KOSPI", pre), 100),
        ("tick 600,000 KRW KOSDAQ before 2023-01-25", krx.tick_size(600_000, "KOSDAQ", pre), 100),
        ("limits of base 9,980, pre-2023 KOSPI", krx.price_limits(9_980, "KOSPI", pre), (6_990, 12_950)),
        ("limits of base 9,980, 2023 table", krx.price_limits(9_980, "KOSPI", post), (6_990, 12_970)),
        ("dynamic VI, KOSPI200, continuous", krx.dynamic_vi_rate(True, "continuous"), 0.03),
        ("dynamic VI, KOSDAQ, closing auction", krx.dynamic_vi_rate(False, "closing_auction"), 0.04),
        ("dynamic VI, KOSPI200, close on expiry", krx.dynamic_vi_rate(True, "closing_auction", True), 0.01),
        (
            "dynamic VI, KOSDAQ150, close on expiry",
            krx.dynamic_vi_rate(False, "closing_auction", True, kosdaq150=True),
            0.01,
        ),
        (
            "sell tax KOSPI, sold 2024-12-27 (settles 2025)",
            krx.sell_tax_rate("KOSPI", dt.date(2024, 12, 27)),
            0.0015,
        ),
        ("sell tax KOSDAQ, sold 2024-06-03", krx.sell_tax_rate("KOSDAQ", post), 0.0018),
        ("derivatives expiry, 2024-06", krx.derivatives_expiry_day(2024, 6), dt.date(2024, 6, 13)),
        (
            "2024-01-02 opens at",
            krx.session_schedule(dt.date(2024, 1, 2)).continuous_start.time(),
            dt.time(10),
        ),
        (
            "2024-11-14 (수능) opens at",
            krx.session_schedule(dt.date(2024, 11, 14)).continuous_start.time(),
            dt.time(10),
        ),
        (
            "2024-11-14 (수능) closing call from",
            krx.session_schedule(dt.date(2024, 11, 14)).closing_auction_start.time(),
            dt.time(16, 20),
        ),
        ("2024-09-16 (추석) is a session", krx.is_trading_day(dt.date(2024, 9, 16)), False),
    ]


def rules_self_check() -> bool:
    table = Table(title="KRX rules self-check (krx-market-rules.md)")
    for col in ("rule", "computed", "expected", ""):
        table.add_column(col)
    ok = True
    for what, got, want in _rule_checks():
        good = got == want
        ok &= good
        table.add_row(what, str(got), str(want), "[green]ok[/]" if good else "[red]WRONG[/]")
    console.print(table)
    return ok


def run_session(seed: int, inband_fill: bool = True) -> Exchange:
    """One KOSDAQ stock-day: opening call, random flow, a buying burst that sets off a dynamic VI,
    the VI call auction and its release, more flow, the closing call."""
    day = dt.date(2024, 3, 5)
    rng = np.random.default_rng(seed)
    ex = Exchange(
        Instrument("123450", "비캡전자", "KOSDAQ", kospi200=False),
        day,
        base_price=12_340,
        config=ExchangeConfig(vi_inband_fill=inband_fill),
        seed=seed,
    )

    def at(h: int, m: int, s: int = 0) -> int:
        return krx.at_seoul(day, dt.time(h, m, s))

    def flow(n: int, start: int, end: int, around: int, limit_only: bool = False) -> None:
        stream = random_order_stream(
            rng,
            ex.grid,
            n,
            start,
            end,
            first_order_id=ex.next_order_id,
            mid_index=int(np.searchsorted(ex.grid, around)),
            p_market=0.0 if limit_only else 0.03,
            p_cancel=0.1 if limit_only else 0.3,
        )
        ex.process(stream.ts, stream.kind, stream.side, stream.price, stream.qty, stream.target)

    flow(400, at(8, 30), at(9, 0), ex.base_price, limit_only=True)
    flow(4_000, at(9, 0), at(9, 30), ex.base_price)
    # liquidity providers quote a thin ladder upward; an informed buyer then sweeps it
    ref = ex.last_price
    for p in range(krx.ceil_to_tick(ref + 20, "KOSDAQ", day), int(ref * 1.09), 20):
        ex.submit_limit(at(9, 30), SELL, krx.floor_to_tick(p, "KOSDAQ", day), 300)
    ex.submit_market(at(9, 30, 1), BUY, 60_000)
    if ex.vi_active:
        flow(300, at(9, 30, 2), at(9, 32), ex.indicative()[0] or ex.last_price, limit_only=True)
    ex.advance(at(9, 33))
    flow(8_000, at(9, 33), at(15, 20), ex.last_price)
    flow(300, at(15, 20), at(15, 30), ex.last_price, limit_only=True)
    ex.finish()
    return ex


def _print_session(ex: Exchange, seconds: float) -> None:
    ticks = ex.ticks()
    trades = ticks.filter(pc.equal(ticks["event_type"], "trade"))
    prices = trades["price"].to_numpy()
    kinds = {v["values"]: v["counts"] for v in ticks["event_type"].value_counts().to_pylist()}
    summary = Table(
        title=f"Exchange session {ex.instrument.stock_code} {ex.instrument.stock_name} "
        f"({ex.instrument.market}) on {ex.day}"
    )
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    for label, value in [
        ("base price (기준가)", f"{ex.base_price:,}"),
        ("daily limits (하한가 / 상한가)", f"{ex.lower_limit:,} / {ex.upper_limit:,}"),
        (
            "open / high / low / close",
            f"{ex.open_price:,} / {prices.max():,} / {prices.min():,} / {ex.close_price:,}",
        ),
        ("volume (거래량)", f"{ex.cum_volume:,}"),
        (
            "tick rows: trade / book / indicative / status",
            " / ".join(f"{kinds.get(t, 0):,}" for t in ("trade", "book", "indicative", "status")),
        ),
        ("engine time", f"{seconds:.2f} s"),
    ]:
        summary.add_row(label, value)
    console.print(summary)
    vis = Table(title="VI log (the engine's own record)")
    for col in ("trigger", "release", "type", "dir", "ref", "trigger price", "auction price", "duration"):
        vis.add_column(col)
    for r in ex.vi_log().to_pylist():
        dur = (r["release_ts"] - r["trigger_ts"]).total_seconds() if r["release_ts"] else float("nan")
        vis.add_row(
            r["trigger_ts"].strftime("%H:%M:%S"),
            r["release_ts"].strftime("%H:%M:%S.%f")[:-3] if r["release_ts"] else "-",
            r["vi_type"],
            f"{r['direction']:+d}",
            f"{r['ref_price']:,}",
            f"{r['trigger_price']:,} ({r['trigger_price'] / r['ref_price'] - 1:+.2%})",
            f"{r['auction_price']:,}" if r["auction_price"] else "-",
            f"{dur:.1f} s",
        )
    console.print(vis)


DEMO_MARKET = {"stocks": 10, "days": 6, "start": dt.date(2024, 3, 4), "intensity": "hot"}
DEMO_PPO_ITERATIONS = 5  # a short run: the demo shows the machinery, not a trained trader
DEMO_PURGE_DAYS = 0  # six days cannot also spare purge gaps: train 4, validation 1, test 1


def run_kis_round_trip(raw: Path, work: Path) -> int:
    """Record a few replayed minutes around the first VI of the stock-day with the most VIs from
    the loopback fake KIS with `vicap record`'s recorder, ingest them, detect their VIs."""
    import asyncio

    from pydantic import SecretStr

    from market.kis.client import KisConfig
    from market.kis.recorder import RecorderConfig
    from serving.fake_kis import FakeKis
    from vicap.events_cmd import run_events
    from vicap.ingest_cmd import run_ingest
    from vicap.record_cmd import record_with_progress

    log = pq.read_table(raw / "vi_log.parquet").to_pandas()
    code, day = log.groupby([log.stock_code, log.trigger_ts.dt.date]).size().idxmax()
    trigger = log[(log.stock_code == code) & (log.trigger_ts.dt.date == day)].trigger_ts.min()
    start, end = ((trigger + dt.timedelta(minutes=m)).time() for m in (-1, 3))
    shutil.rmtree(work, ignore_errors=True)
    keys = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}  # the fake's, not real ones
    with FakeKis.replay(raw, day, [code], start, end, speed=120, **keys) as fake:
        kis = KisConfig(
            **{name: SecretStr(value) for name, value in keys.items()},
            rest_url=fake.rest_url,
            ws_url=fake.ws_url,
            min_interval_s=0.01,
        )
        config = RecorderConfig(
            out=work / "recording",
            codes=[code],
            stop_us=fake.feed.frames[-1][0] + 30_000_000,
            vi_poll_s=0.5,
            stock_rows=fake.feed.stock_rows,
        )
        console.print(f"recording {code} on {day} {start:%H:%M:%S}-{end:%H:%M:%S} from the fake KIS at 120x")
        asyncio.run(record_with_progress(kis, config, clock_us=fake.now_us, backoff_s=0.05))
    return run_ingest(work / "recording", "kis-log", None, work / "raw", None) or run_events(
        work / "raw", work / "events"
    )


def run_service_check(settings) -> bool:
    """`bentoml serve` on the demo's registered model and policy: one /predict and one /act answer
    for the last VI of the data, over HTTP."""
    import json
    import socket

    import httpx

    from feature_repo.build import DECISION_TABLE
    from vicap.serve_cmd import ServiceProcess, serve_environment

    table = pq.read_table(settings.paths.features / f"{DECISION_TABLE}.parquet", columns=["event_id"])
    body = {"event_id": table["event_id"][-1].as_py(), "decision_offset": 0}
    with socket.socket() as s:  # the settings' port unless something already listens there
        port = settings.serve_port if s.connect_ex((settings.serve_host, settings.serve_port)) else 0
    if not port:
        with socket.socket() as s:
            s.bind((settings.serve_host, 0))
            port = s.getsockname()[1]
    token = settings.service_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    log = settings.paths.root / "demo" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = serve_environment(settings, "vicap-lightgbm", "vicap-ppo")
    with ServiceProcess(env, settings.serve_host, port, log) as svc:
        predict = httpx.post(f"{svc.url}/predict", json=body, headers=headers, timeout=10)
        console.print(f"POST {svc.url}/predict {json.dumps(body)} -> {predict.status_code}")
        console.print_json(predict.text)
        act_body = body | {"start_price": 10_000, "last_price": 10_050}
        act = httpx.post(f"{svc.url}/act", json=act_body, headers=headers, timeout=10)
        console.print(f"POST {svc.url}/act {json.dumps(act_body)} -> {act.status_code} {act.text}")
        console.rule(
            "[bold]vicap demo[/]: a paper session: the fake KIS feed, the service, the simulated broker"
        )
        paper_ok = run_paper_session(settings, svc.url)
    console.print(
        "serve it yourself: [bold]vicap serve[/] (or bentoml serve vicap.service:VICap), then\n"
        f"  curl -s localhost:{settings.serve_port}/predict -H 'Content-Type: application/json' "
        f"-d '{json.dumps(body)}'"
    )
    return predict.status_code == 200 and act.status_code == 200 and paper_ok


def run_paper_session(settings, service_url: str, speed: float = 20.0) -> bool:
    """`vicap live --source kis --broker sim --strategy model --service URL` on a replayed VI of
    the last day: the loopback fake KIS serves its feed, the model service answers each decision,
    the simulated broker fills the orders; the trades and the journal summary are printed. The VI
    is one the backtest's model strategy traded, where there is one."""
    import asyncio

    import pandas as pd
    from pydantic import SecretStr

    from serving.fake_kis import FakeKis
    from serving.journal import journal_path
    from vicap.live_cmd import LiveOptions, print_summary, run_compare, run_session

    paths = settings.paths
    events = pd.read_parquet(paths.events).dropna(subset=["release_ts"])
    trades = pd.read_parquet(paths.reports / "backtest" / "demo" / "trades.parquet")
    traded = trades[trades["strategy"].str.startswith("model") & trades["event_id"].isin(events["event_id"])]
    chosen = traded["event_id"].iloc[-1] if len(traded) else events["event_id"].iloc[-1]
    ev = events[events["event_id"] == chosen].iloc[0]
    day = ev.trigger_ts.date()
    start, end = (
        (ev.trigger_ts - dt.timedelta(seconds=150)).time(),
        (ev.release_ts + dt.timedelta(minutes=4)).time(),
    )
    work = paths.root / "demo" / "paper"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for suffix in ("", "-wal", "-shm"):  # the demo's day starts with an empty journal
        Path(f"{journal_path(paths.journal, day)}{suffix}").unlink(missing_ok=True)
    keys = {"app_key": "demo-app-key", "app_secret": "demo-app-secret"}  # the fake's, not real ones
    with FakeKis.replay(paths.raw, day, [ev.stock_code], start, end, speed=speed, **keys) as fake:
        (work / "stocks.csv").write_text("\n".join(fake.feed.stock_rows) + "\n", encoding="utf-8")
        live = settings.model_copy(
            update={
                "kis_app_key": SecretStr(keys["app_key"]), "kis_app_secret": SecretStr(keys["app_secret"]),
                "kis_rest_url": fake.rest_url, "kis_ws_url": fake.ws_url, "kis_token_cache": work / "token",
            }
        )  # fmt: skip
        options = LiveOptions(
            source="kis", broker="sim", strategy="model", service_url=service_url,
            stocks_file=work / "stocks.csv", stop_us=krx.at_seoul(day, end), status_port=0,
        )  # fmt: skip
        console.print(
            f"replaying {ev.stock_code} on {day} {start:%H:%M:%S}-{end:%H:%M:%S} (VI {chosen}) at {speed:g}x"
        )
        summary = asyncio.run(run_session(live, options, clock_us=fake.now_us))
    print_summary(summary)
    console.rule("[bold]vicap demo[/]: the paper session beside a backtest of the same VI")
    compared = run_compare(settings, day, None, None, options.capital) == 0
    return summary["vis"] >= 1 and summary["signals"] > 0 and compared


def run_demo(seed: int = 7) -> int:
    settings = get_settings()
    console.rule("[bold]vicap demo[/]: a synthetic KRX market")
    from vicap.generate_cmd import run_generate
    from vicap.market_check_cmd import run_market_check

    raw = settings.paths.raw
    m = DEMO_MARKET
    run_generate(raw, m["stocks"], m["days"], seed, m["start"], m["intensity"], os.cpu_count() or 1, None)
    console.rule("[bold]vicap demo[/]: market realism check")
    market_ok = run_market_check(raw) == 0
    # before the main validation, so that data/reports/validation/index.html ends on data/raw
    console.rule("[bold]vicap demo[/]: the busiest stock-day as a KIS real-time recording, ingested again")
    kis_ok = run_kis_round_trip(raw, settings.paths.root / "demo" / "kis") == 0
    console.rule("[bold]vicap demo[/]: validation (Great Expectations)")
    from vicap.validate_cmd import run_validate

    valid_ok = run_validate(raw, os.cpu_count() or 1) == 0
    console.rule("[bold]vicap demo[/]: VI events and 1-second panels")
    from vicap.events_cmd import run_events

    events_ok = run_events(raw, settings.paths.events.parent) == 0
    console.rule("[bold]vicap demo[/]: features and labels in the Feast store")
    from vicap.features_cmd import run_demo_features

    features_ok = run_demo_features(raw, settings) == 0
    console.rule("[bold]vicap demo[/]: models (Ray Train, Ray Tune, LightGBM) and their evaluation")
    from vicap.train_cmd import run_demo_models

    models_ok = features_ok and run_demo_models(settings, DEMO_PURGE_DAYS) == 0
    console.rule("[bold]vicap demo[/]: a PPO policy (RLlib) on the VI trading environment")
    from vicap.rl_cmd import run_rl_train

    rl_ok = (
        models_ok
        and run_rl_train(DEMO_PPO_ITERATIONS, 60, 0.1, 1_000, DEMO_PURGE_DAYS, settings=settings) == 0
    )
    console.rule("[bold]vicap demo[/]: backtest of the rule, model, policy and buy-and-hold strategies")
    from vicap.backtest_cmd import (
        MODEL_STRATEGY,
        POLICY_STRATEGY,
        RULE_STRATEGIES,
        BacktestOptions,
        run_backtest,
    )

    strategies = (*RULE_STRATEGIES, MODEL_STRATEGY, POLICY_STRATEGY)
    options = BacktestOptions(
        strategies, "vicap-lightgbm", "vicap-ppo", purge_days=DEMO_PURGE_DAYS, run_name="demo"
    )
    backtest_ok = rl_ok and run_backtest(options, settings) == 0
    console.rule("[bold]vicap demo[/]: the model service (BentoML) over HTTP")
    service_ok = backtest_ok and run_service_check(settings)
    console.rule("[bold]vicap demo[/]: KRX rules")
    rules_ok = rules_self_check()
    console.rule("[bold]vicap demo[/]: one exchange session with a VI")
    t0 = time.perf_counter()
    ex = run_session(seed)
    seconds = time.perf_counter() - t0
    _print_session(ex, seconds)
    out = settings.paths.root / "demo" / "engine_session"
    out.mkdir(parents=True, exist_ok=True)
    ticks, vi_log = ex.ticks(), ex.vi_log()
    check_table(ticks, TICK_SCHEMA, source="demo ticks")
    check_table(vi_log, VI_LOG_SCHEMA, source="demo vi_log")
    pq.write_table(ticks, out / "ticks.parquet")
    pq.write_table(vi_log, out / "vi_log.parquet")
    console.print(f"wrote {ticks.num_rows:,} tick rows and {vi_log.num_rows} VI records under {out}")
    if (
        not (
            rules_ok
            and market_ok
            and valid_ok
            and events_ok
            and features_ok
            and models_ok
            and backtest_ok
            and service_ok
            and kis_ok
        )
        or vi_log.num_rows == 0
    ):
        console.print("[red]demo failed: a rule check or market invariant is broken, or no VI happened[/]")
        return 1
    console.print(f"realism report: {settings.paths.reports / 'market' / 'index.html'}")
    console.print(f"model report: {settings.paths.reports / 'model' / 'index.html'}")
    console.print(f"backtest report: {settings.paths.reports / 'backtest' / 'index.html'}")
    console.print("[green]demo ok[/]")
    return 0
