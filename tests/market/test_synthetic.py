"""The synthetic market: files, determinism, the KRX invariants on what it generates, every VI in
its log reproducible from its own tick stream, and stylized facts on a small dataset."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from market import krx
from market.krx.flows import INVESTOR_PUBLICATIONS
from market.krx.schema import (
    INSTRUMENT_SCHEMA,
    SYNTHETIC_VI_LOG_FIELDS,
    TICK_OPTIONAL_FIELDS,
    TICK_SCHEMA,
    VI_LOG_SCHEMA,
    check_table,
)
from market.synthetic.generator import generate, make_universe
from market.synthetic.realism import measure
from tests.conftest import SYNTHETIC_ARGS as ARGS
from vicap.cli import app

START = ARGS["start"]


@pytest.fixture(scope="module")
def ticks(dataset) -> pd.DataFrame:
    return pd.concat(
        (pq.read_table(f).to_pandas() for f in sorted(dataset.glob("ticks/*/*.parquet"))), ignore_index=True
    )


@pytest.fixture(scope="module")
def vi_log(dataset) -> pd.DataFrame:
    return pq.read_table(dataset / "vi_log.parquet").to_pandas()


@pytest.fixture(scope="module")
def instruments(dataset) -> pd.DataFrame:
    return pq.read_table(dataset / "instruments.parquet").to_pandas()


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_layout_schemas_and_calendar(dataset, instruments, vi_log):
    days = sorted(p.name for p in (dataset / "ticks").iterdir())
    assert days == [f"date={d}" for d in krx.next_trading_days(START, 3)]
    for f in dataset.glob("ticks/*/*.parquet"):
        ticks = pq.read_table(f)
        check_table(ticks, TICK_SCHEMA, optional=TICK_OPTIONAL_FIELDS, source=str(f))
        # both clocks: received after it happened (3-40 ms), never before the row before it
        stamps, received = (ticks[c].cast(pa.int64()).to_numpy() for c in ("timestamp", "recv_ts"))
        lag = received - stamps
        assert lag.min() >= krx.FEED_LATENCY_RANGE_US[0] and (np.diff(received) >= 0).all()
    check_table(pq.read_table(dataset / "instruments.parquet"), INSTRUMENT_SCHEMA)
    check_table(pq.read_table(dataset / "vi_log.parquet"), VI_LOG_SCHEMA, optional=SYNTHETIC_VI_LOG_FIELDS)
    assert len(instruments) == 6 * 3 and instruments["stock_code"].str.fullmatch(r"\d{6}").all()
    assert set(instruments["market"]) <= {"KOSPI", "KOSDAQ"}
    assert len(vi_log) >= 5, "hot intensity must produce VIs"
    assert set(vi_log["cause"].dropna()) <= {"news", "disclosure", "program", "panic"}
    assert vi_log["cause"].notna().mean() > 0.5


def test_instruments_carry_index_and_futures_membership(instruments):
    universe = make_universe(60, seed=11, on=START)
    assert any(s.kosdaq150 for s in universe) and any(s.futures_underlying for s in universe)
    assert all(s.market == "KOSDAQ" for s in universe if s.kosdaq150)
    assert all(s.market == "KOSPI" for s in universe if s.kospi200)
    assert not (instruments["kospi200"] & instruments["kosdaq150"]).any()


def test_a_csat_day_is_generated_an_hour_later(tmp_path):
    csat = dt.date(2024, 11, 14)
    generate(tmp_path / "raw", stocks=2, days=1, seed=3, start=csat, intensity="hot", jobs=1)
    ten = pd.Timestamp("2024-11-14 10:00", tz="Asia/Seoul")
    for f in sorted((tmp_path / "raw" / "ticks").glob("*/*.parquet")):
        t = pq.read_table(f).to_pandas()
        trades = t[t["event_type"] == "trade"]
        assert trades["timestamp"].min() >= ten  # the open at 10:00 plus its random end
        assert (
            trades["timestamp"].iloc[0] <= ten + pd.Timedelta(seconds=30) or trades["vi_status"].iloc[0] == 2
        )
        assert (t["timestamp"] >= pd.Timestamp("2024-11-14 09:30", tz="Asia/Seoul")).all()
        assert trades["timestamp"].max() >= pd.Timestamp("2024-11-14 16:30", tz="Asia/Seoul")


def test_next_day_base_price_is_the_previous_close(ticks, instruments):
    for code, g in instruments.sort_values("date").groupby("stock_code"):
        for prev, nxt in zip(g.itertuples(), g.iloc[1:].itertuples(), strict=False):
            day = ticks[(ticks.stock_code == code) & (ticks.timestamp.dt.date == prev.date)]
            close = day[day.event_type == "trade"].price.iloc[-1]
            assert nxt.base_price == krx.floor_to_tick(int(close), prev.market, nxt.date)


def test_same_seed_gives_byte_identical_output_whatever_the_jobs(dataset, tmp_path):
    again = tmp_path / "again"
    generate(again, jobs=2, **ARGS)
    assert digest(again) == digest(dataset)
    other = tmp_path / "other"
    generate(other, jobs=1, **{**ARGS, "seed": 12, "days": 1})
    first_day = {k: v for k, v in digest(dataset).items() if "date=2024-03-04" in k}
    assert not set(first_day.items()) & set(digest(other).items())


def test_ray_tasks_give_the_same_bytes_as_processes(tmp_path):
    args = {"stocks": 2, "days": 1, "seed": 5, "start": START, "intensity": "hot"}
    generate(tmp_path / "ray", jobs=2, ray_address="local", **args)
    generate(tmp_path / "procs", jobs=2, **args)
    assert digest(tmp_path / "ray") == digest(tmp_path / "procs")


def test_trades_on_grid_within_limits_and_books_uncrossed(ticks, instruments):
    trades = ticks[ticks.event_type == "trade"].assign(day=ticks.timestamp.dt.date)
    trades = trades.merge(
        instruments.rename(columns={"date": "day"})[["day", "stock_code", "base_price"]],
        on=["stock_code", "day"],
        how="left",
    )
    assert trades.base_price.notna().all()
    for (market, day, base), g in trades.groupby(["market", "day", "base_price"]):
        assert krx.is_on_grid_array(g.price.to_numpy(), market, day).all()
        lower, upper = krx.price_limits(int(base), market, day)
        assert g.price.between(lower, upper).all()
    book = ticks[(ticks.event_type == "book") & (ticks.session == "continuous") & (ticks.vi_status == 0)]
    both = book[(book.bid_price_1 > 0) & (book.ask_price_1 > 0)]
    assert len(both) > 1000 and (both.bid_price_1 < both.ask_price_1).all()
    # levels are monotone: bids fall, asks rise
    for i in range(1, 10):
        nb = both[both[f"bid_price_{i + 1}"] > 0]
        assert (nb[f"bid_price_{i}"] > nb[f"bid_price_{i + 1}"]).all()
        na = both[both[f"ask_price_{i + 1}"] > 0]
        assert (na[f"ask_price_{i}"] < na[f"ask_price_{i + 1}"]).all()


def test_nothing_trades_in_a_vi_auction_but_its_uncross(ticks, vi_log):
    trades = ticks[ticks.event_type == "trade"]
    assert not (trades.vi_status == 1).any()
    auction_prints = trades[trades.side == 0]
    releases = set(zip(vi_log.stock_code, vi_log.release_ts, strict=True))
    for row in auction_prints.itertuples():
        t = row.timestamp.time()
        is_open_or_close = t <= dt.time(10, 3) or t >= dt.time(15, 30)
        assert is_open_or_close or (row.stock_code, row.timestamp) in releases
    for vi in vi_log.dropna(subset=["release_ts"]).itertuples():
        same = ticks[(ticks.stock_code == vi.stock_code) & (ticks.timestamp == vi.release_ts)]
        assert (same.vi_status == 2).all() and len(same) >= 1
        if not pd.isna(vi.auction_price):
            assert (same[same.event_type == "trade"].price == vi.auction_price).all()


def test_vi_durations_are_two_minutes_plus_a_random_end(vi_log):
    done = vi_log.dropna(subset=["release_ts"])
    intraday = done[done.release_ts.dt.time < dt.time(15, 20)]
    seconds = (intraday.release_ts - intraday.trigger_ts).dt.total_seconds()
    assert len(seconds) >= 5 and seconds.between(120, 150).all()
    assert seconds.std() > 1  # the end really is random


def test_every_vi_is_reproducible_from_the_tick_stream(ticks, vi_log, instruments):
    """Replay each stock-day: the static reference is the base price, then each auction's price;
    a VI's trigger price must reach the band of the type it claims, against a reference the
    stream shows, and continuous prints never reach the static band."""
    static_bp = krx.rate_to_bp(krx.STATIC_VI_RATE)
    checked = 0
    for (code, day), g in ticks.groupby([ticks.stock_code, ticks.timestamp.dt.date]):
        inst = instruments[(instruments.stock_code == code) & (instruments.date == day)].iloc[0]
        expiry = krx.is_derivatives_expiry_day(day)
        dyn_bp = {
            session: krx.rate_to_bp(krx.dynamic_vi_rate(bool(inst.kospi200), session, expiry))
            for session in ("continuous", "closing_auction")
        }
        vis = vi_log[(vi_log.stock_code == code) & (vi_log.trigger_ts.dt.date == day)]
        trades = g[g.event_type == "trade"]
        static_ref = int(inst.base_price)
        for vi in vis.sort_values("trigger_ts").itertuples():
            before = trades[trades.timestamp < vi.trigger_ts]
            auctions = before[before.side == 0]
            ref_static = int(auctions.price.iloc[-1]) if len(auctions) else static_ref
            continuous = before[
                (before.side != 0)
                & (
                    before.timestamp
                    > (auctions.timestamp.iloc[-1] if len(auctions) else before.timestamp.min())
                )
            ]
            assert all(krx.band_direction(int(p), ref_static, static_bp) == 0 for p in continuous.price)
            if vi.vi_type in ("static", "both"):
                assert vi.ref_price == ref_static
                assert krx.band_direction(int(vi.trigger_price), ref_static, static_bp) == vi.direction
            if vi.vi_type == "dynamic":
                at_or_before = trades[trades.timestamp <= vi.trigger_ts].price
                assert vi.ref_price in set(at_or_before.iloc[-50:]) | {ref_static}
                session = "closing_auction" if vi.trigger_ts.time() >= dt.time(15, 20) else "continuous"
                assert (
                    krx.band_direction(int(vi.trigger_price), int(vi.ref_price), dyn_bp[session])
                    == vi.direction
                )
            status = g[(g.timestamp == vi.trigger_ts) & (g.event_type == "status") & (g.vi_status == 1)]
            assert len(status) == 1 and status.price.iloc[0] == vi.trigger_price
            checked += 1
    assert checked == len(vi_log)


def test_static_reference_resets_to_each_auction_price(vi_log):
    resets = 0
    for _, g in vi_log.groupby([vi_log.stock_code, vi_log.trigger_ts.dt.date]):
        g = g.sort_values("trigger_ts")
        for prev, nxt in zip(g.itertuples(), g.iloc[1:].itertuples(), strict=False):
            if nxt.vi_type in ("static", "both") and not pd.isna(prev.auction_price):
                assert nxt.ref_price == prev.auction_price
                resets += 1
    assert resets >= 1


def test_investor_flows_change_only_at_publication_times(ticks):
    publish = [dt.time(h, m) for h, m in INVESTOR_PUBLICATIONS]
    for (_, _), g in ticks.groupby([ticks.stock_code, ticks.timestamp.dt.date]):
        changed = g[g.institution_net.diff().fillna(0) != 0]
        for ts in changed.timestamp:
            # the first row at or after a publication time carries the new figure
            previous_row = g[g.timestamp < ts].timestamp.max()
            assert any(previous_row.time() < p <= ts.time() for p in publish), ts


def test_causes_leave_traces(ticks, vi_log):
    assert ticks.news_flag.any() or ticks.disclosure_flag.any()
    program = vi_log[vi_log.cause == "program"]
    for vi in program.itertuples():
        g = ticks[
            (ticks.stock_code == vi.stock_code)
            & (ticks.timestamp <= vi.trigger_ts)
            & (ticks.timestamp.dt.date == vi.trigger_ts.date())
        ]
        assert g.program_net_buy.abs().max() > 0


def test_stylized_facts_on_a_small_dataset(dataset):
    result = measure(dataset)
    facts = {f.name: f for f in result.facts}
    assert result.invariants_ok, [f for f in result.facts if f.invariant and not f.ok]
    assert facts["excess kurtosis of 1-minute returns"].ok
    assert facts["autocorrelation of |1-min returns|, lag 1"].ok
    assert facts["median spread (ticks)"].ok
    assert facts["VIs per stock-year, all types (hot intensity)"].ok
    assert {"returns", "volume_profile", "vi_durations", "post_release"} <= set(result.series)


def test_market_check_cli_writes_the_report_and_fails_on_a_broken_invariant(dataset, data_dir, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["market-check", str(dataset)])
    assert ok.exit_code == 0, ok.output
    page = (data_dir / "reports" / "market" / "index.html").read_text()
    assert "all invariants hold" in page and page.count("data:image/png;base64") >= 5
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    victim = sorted(broken.glob("ticks/*/*.parquet"))[0]
    table = pq.read_table(victim).to_pandas()
    first_trade = table.index[table.event_type == "trade"][0]
    table.loc[first_trade, "price"] = table.loc[first_trade, "price"] * 10 + 3  # off the grid, over the limit
    pq.write_table(pa.Table.from_pandas(table, schema=TICK_SCHEMA, preserve_index=False), victim)
    bad = runner.invoke(app, ["market-check", str(broken)])
    assert bad.exit_code == 1 and "BROKEN" in bad.output
    missing = runner.invoke(app, ["market-check", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no instruments.parquet here" in " ".join(missing.output.split())


def test_generate_cli_rejects_bad_arguments(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--vi-intensity", "wild"])
    assert bad.exit_code != 0 and "normal, hot" in bad.output
    bad_date = runner.invoke(app, ["generate", "--out", str(tmp_path / "x"), "--start", "2024-13-01"])
    assert bad_date.exit_code != 0 and "YYYY-MM-DD" in bad_date.output


def test_generate_cli_small_run(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--stocks",
            "2",
            "--days",
            "1",
            "--seed",
            "3",
            "--start",
            "2024-03-04",
            "--out",
            str(out),
            "--vi-intensity",
            "hot",
            "--jobs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Synthetic KRX market written" in result.output and (out / "vi_log.parquet").exists()
    assert len(list(out.glob("ticks/date=2024-03-04/*.parquet"))) == 2
    assert np.isfinite(pd.read_json(out / "generate_summary.json", typ="series")["seconds"])


def _assert_returns_unpredictable(result) -> None:
    """1-minute lag-1 autocorrelation within its range over all minutes and away from VIs, the
    range widened by two standard errors of a correlation over all the sample's minute pairs
    (fewer pairs lie away from VIs: stricter there than the sample alone would need)."""
    facts = {f.name: f for f in result.facts}
    tolerance = 2 / np.sqrt(len(result.series["returns"]))
    for where in ("all minutes", "minutes away from VIs"):
        ac = facts[f"autocorrelation of 1-min returns, lag 1, {where}"]
        assert ac.low - tolerance <= ac.value <= ac.high + tolerance, (ac, tolerance)
    assert facts["autocorrelation of |1-min returns|, lag 1"].ok


def test_the_default_edge_leaves_no_free_lunch_and_high_edge_restores_the_signal(tmp_path):
    """One market, both edges (every draw but the continuation and the auction's discovery is
    the same). The default: following every VI loses its costs at 10, 60 and 300 s, no single
    observable known at the release predicts the 60-s continuation past AUC 0.70, and 1-minute
    returns are not autocorrelated; each target widened by two standard errors of this small sample.
    `--edge high` makes the same observables a strong signal again."""
    args = {"stocks": 20, "days": 3, "seed": 5, "start": dt.date(2024, 3, 4), "intensity": "hot", "jobs": 2}
    found = {}
    for edge in ("low", "high"):
        summary = generate(tmp_path / edge, edge=edge, **args)
        assert summary.edge == edge and summary.vis >= 80
        result = measure(tmp_path / edge)
        found[edge] = ({f.name: f for f in result.facts}, result.tables["vi_predictability_auc"])
        if edge == "low":
            _assert_returns_unpredictable(result)
            assert found["low"][0]["excess kurtosis of 1-minute returns"].ok
    facts, aucs = found["low"]
    returns = [f for name, f in facts.items() if name.startswith("mean return") and "release" in name]
    assert len(returns) == 3 and all(f.invariant and f.ok for f in returns), returns
    best = next(f for name, f in facts.items() if name.startswith("best single-observable AUC"))
    assert best.invariant and best.ok, best
    high_facts, high_aucs = found["high"]
    low_auc, high_auc = (t.loc[t["kind"] == "observable", "auc"].max() for t in (aucs, high_aucs))
    assert high_auc > low_auc + 0.15, (high_auc, low_auc)
    high_returns = [f for name, f in high_facts.items() if name.startswith("mean return")]
    assert not any(f.invariant for f in high_returns)  # shown, not enforced, off the default edge


def test_a_normal_market_has_unpredictable_returns_and_a_lone_vi_breaks_no_invariant(tmp_path):
    """The default intensity: no bid-ask bounce or trending mid-quote in 1-minute returns (the
    excess kurtosis of 20 calm stock-days turns on whether a jump falls in them: the hot test
    asserts it). This sample has a single VI, too few to estimate an AUC or a mean's standard error: the
    no-free-lunch facts show it and are not held to a bound they cannot be measured against."""
    args = {
        "stocks": 10,
        "days": 2,
        "seed": 5,
        "start": dt.date(2024, 3, 4),
        "intensity": "normal",
        "jobs": 2,
    }
    summary = generate(tmp_path / "raw", **args)
    assert summary.vis == 1
    result = measure(tmp_path / "raw")
    assert result.invariants_ok, [f for f in result.facts if f.invariant and not f.ok]
    _assert_returns_unpredictable(result)
    lone = [f for f in result.facts if f.name.startswith("mean return") and "release" in f.name]
    assert len(lone) == 3 and all(f.high == np.inf for f in lone)
    assert not any(f.name.startswith("best single-observable AUC") for f in result.facts)
