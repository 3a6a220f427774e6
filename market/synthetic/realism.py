"""Stylized facts of a tick dataset, each beside the range a real KRX market shows, and the
invariants no dataset may break (grid, limits, uncrossed continuous book, VI durations).

Used by ``vicap market-check`` on synthetic data, and usable on any dataset in the raw layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from market import krx
from market.krx.checks import on_tick_grid, within_daily_limits
from market.krx.dataset import connect, ticks_source
from market.krx.sessions import per_day

RETURN_HORIZON_S = 300  # post-release return horizon of the by-cause table
# VIs per stock-year: about 5 in a normal market (a few to 20 by name), far more in "hot" data
VI_RATE_RANGE = {"normal": (1.0, 20.0), "hot": (50.0, 5_000.0), None: (0.5, 5_000.0)}
INFO = (-np.inf, np.inf)


@dataclass
class Fact:
    name: str
    value: float
    low: float
    high: float
    invariant: bool = False  # a broken invariant fails the check; a fact out of range only warns

    @property
    def expected(self) -> str:
        return (
            "(information)"
            if not np.isfinite(self.high - self.low)
            else f"{self.low:,.4g} .. {self.high:,.4g}"
        )

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.value) and self.low <= self.value <= self.high)


@dataclass
class RealismResult:
    facts: list[Fact]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    series: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def invariants_ok(self) -> bool:
        return all(f.ok for f in self.facts if f.invariant)


def one_minute_returns(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Log returns of the last trade price of each continuous-session minute, per stock-day."""
    return con.execute("""
        WITH m AS (
            SELECT stock_code, CAST(timestamp AS DATE) AS day, date_trunc('minute', timestamp) AS minute,
                   arg_max(price, timestamp) AS close
            FROM ticks WHERE event_type = 'trade' AND session = 'continuous'
            GROUP BY ALL)
        SELECT stock_code, day, minute,
               ln(close / lag(close) OVER (PARTITION BY stock_code, day ORDER BY minute)) AS r
        FROM m QUALIFY r IS NOT NULL ORDER BY stock_code, day, minute
    """).df()


def abs_return_autocorrelation(returns: pd.DataFrame, lags: range) -> np.ndarray:
    """Autocorrelation of |r| at each lag, pooled over stock-days (pairs never cross a day)."""
    out = []
    for lag in lags:
        xs, ys = [], []
        for _, g in returns.groupby(["stock_code", "day"]):
            a = np.abs(g["r"].to_numpy())
            if len(a) > lag:
                xs.append(a[:-lag])
                ys.append(a[lag:])
        x, y = np.concatenate(xs), np.concatenate(ys)
        out.append(float(np.corrcoef(x, y)[0, 1]))
    return np.array(out)


def _intensity(root: Path) -> str | None:
    """The VI intensity a synthetic dataset was generated with (None for other data)."""
    summary = root / "generate_summary.json"
    return json.loads(summary.read_text()).get("intensity") if summary.exists() else None


def _lag1(rets: pd.DataFrame) -> float:
    """Lag-1 autocorrelation of returns within stock-days."""
    if len(rets) < 100:
        return np.nan
    prev = rets.groupby(["stock_code", "day"])["r"].shift(1)
    ok = prev.notna()
    return float(np.corrcoef(rets["r"][ok], prev[ok])[0, 1])


def _near_vi(rets: pd.DataFrame, vi_log: pd.DataFrame, minutes: int) -> np.ndarray:
    near = np.zeros(len(rets), dtype=bool)
    pad = pd.Timedelta(minutes=minutes)
    for code, g in vi_log.groupby("stock_code"):
        mine = (rets["stock_code"] == code).to_numpy()
        ts = rets.loc[mine, "minute"]
        hit = np.zeros(mine.sum(), dtype=bool)
        for trig, rel in zip(g["trigger_ts"], g["release_ts"].fillna(g["trigger_ts"]), strict=True):
            hit |= ((ts >= trig - pad) & (ts <= rel + pad)).to_numpy()
        near[mine] = hit
    return near


def _grid_and_limit_shares(con: duckdb.DuckDBPyConnection) -> tuple[float, float, int]:
    trades = con.execute("""
        SELECT t.event_type, t.timestamp, t.market, t.session, t.price, i.base_price
        FROM ticks t JOIN instruments i ON i.stock_code = t.stock_code AND i.date = CAST(t.timestamp AS DATE)
        WHERE t.event_type = 'trade'
    """).df()
    if trades.empty:
        return np.nan, np.nan, 0
    return float(on_tick_grid(trades).mean()), float(within_daily_limits(trades).mean()), len(trades)


def post_release_returns(con: duckdb.DuckDBPyConnection, vi_log: pd.DataFrame) -> pd.DataFrame:
    """Direction-signed log return from the auction price to the last trade RETURN_HORIZON_S after
    each release (positive: the move continued, negative: it reverted)."""
    released = vi_log.dropna(subset=["release_ts", "auction_price"]).copy()
    if released.empty:
        return released.assign(ret=[])
    con.register("released", released[["stock_code", "release_ts", "auction_price", "direction"]])
    later = con.execute(f"""
        SELECT r.stock_code, r.release_ts, r.auction_price, r.direction,
               (SELECT arg_max(t.price, t.timestamp) FROM ticks t
                 WHERE t.stock_code = r.stock_code AND t.event_type = 'trade'
                   AND t.timestamp > r.release_ts
                   AND t.timestamp <= r.release_ts + INTERVAL {RETURN_HORIZON_S} SECOND) AS later_price
        FROM released r
    """).df()
    merged = released.merge(
        later[["stock_code", "release_ts", "later_price"]], on=["stock_code", "release_ts"]
    )
    merged = merged.dropna(subset=["later_price"])
    merged["ret"] = merged["direction"] * np.log(merged["later_price"] / merged["auction_price"])
    return merged


def measure(root: Path) -> RealismResult:
    root = Path(root)
    con = connect()
    con.execute(f"CREATE VIEW ticks AS SELECT * EXCLUDE (file_row_number) FROM {ticks_source(root)}")
    instruments = pq.read_table(root / "instruments.parquet").to_pandas()
    con.register("instruments", instruments)
    vi_log = pq.read_table(root / "vi_log.parquet").to_pandas()
    n_stocks = instruments["stock_code"].nunique()
    n_days = instruments["date"].nunique()
    stock_years = n_stocks * n_days / 250.0
    facts: list[Fact] = []
    tables: dict[str, pd.DataFrame] = {}
    series: dict[str, pd.DataFrame] = {}

    # returns: heavy tails, no linear predictability, clustered volatility
    rets = one_minute_returns(con)
    kurt = float(stats.kurtosis(rets["r"], fisher=True)) if len(rets) > 10 else np.nan
    facts.append(Fact("excess kurtosis of 1-minute returns", kurt, 2.0, 500.0))
    lags = range(1, 11)
    acf_abs = abs_return_autocorrelation(rets, lags) if len(rets) > 100 else np.full(10, np.nan)
    facts.append(Fact("autocorrelation of |1-min returns|, lag 1", acf_abs[0], 0.05, 0.6))
    facts.append(
        Fact("autocorrelation of |1-min returns|, mean of lags 1-10", float(np.mean(acf_abs)), 0.02, 0.5)
    )
    facts.append(Fact("autocorrelation of 1-min returns, lag 1, all minutes", _lag1(rets), *INFO))
    # away from VIs (10 minutes either side) a market shows no linear predictability
    calm = rets[~_near_vi(rets, vi_log, minutes=10)]
    facts.append(
        Fact("autocorrelation of 1-min returns, lag 1, minutes away from VIs", _lag1(calm), -0.2, 0.1)
    )
    series["abs_return_acf"] = pd.DataFrame({"lag": list(lags), "acf": acf_abs})
    series["returns"] = rets[["r"]]

    # intraday U-shape of volume, by 30-minute bucket of the regular session
    profile = con.execute("""
        SELECT (extract('hour' FROM timestamp) * 60 + extract('minute' FROM timestamp)) // 30 * 30 AS bucket,
               sum(volume) AS volume
        FROM ticks WHERE event_type = 'trade' AND session = 'continuous' GROUP BY ALL ORDER BY bucket
    """).df()
    # volume per minute of each bucket (the last one, 15:00-15:20, is 20 minutes long)
    minutes = np.where(profile["bucket"] == 15 * 60, 20, 30)
    profile["share"] = profile["volume"] / minutes / (profile["volume"] / minutes).sum()
    series["volume_profile"] = profile
    if len(profile) >= 5:
        mid = profile["share"].iloc[2:-2].mean()
        first, last = profile["share"].iloc[0] / mid, profile["share"].iloc[-1] / mid
        facts.append(Fact("volume rate, first half hour / midday", first, 1.3, 10))
        facts.append(Fact("volume rate, last 20 minutes / midday", last, 1.1, 10))

    # spreads in ticks, continuous book rows
    spreads = con.execute("""
        SELECT market, CAST(timestamp AS DATE) AS day, bid_price_1 AS bid, ask_price_1 - bid_price_1 AS spread
        FROM ticks
        WHERE event_type = 'book' AND session = 'continuous' AND bid_price_1 > 0 AND ask_price_1 > 0
        USING SAMPLE 400000 ROWS (reservoir, 42)
    """).df()
    if len(spreads):
        ticks = np.zeros(len(spreads))
        for (market, day), g in spreads.groupby(["market", "day"]):
            on = pd.Timestamp(day).date()
            ticks[g.index] = g["spread"].to_numpy() / krx.tick_size_array(g["bid"].to_numpy(), market, on)
        spreads["ticks"] = ticks
        series["spread_ticks"] = spreads[["ticks"]]
        facts.append(Fact("median spread (ticks)", float(np.median(ticks)), 1, 4))
        facts.append(Fact("share of 1-tick spreads", float(np.mean(ticks <= 1.0 + 1e-9)), 0.2, 0.95))
        facts.append(
            Fact("crossed or locked continuous books", float(np.mean(ticks <= 0)), 0, 0, invariant=True)
        )

    # VIs: counts per stock-year by type, durations
    intensity = _intensity(root)
    for vi_type in ("static", "dynamic", "both"):
        count = int((vi_log["vi_type"] == vi_type).sum())
        facts.append(Fact(f"{vi_type} VIs per stock-year", count / stock_years, *INFO))
    facts.append(
        Fact(
            f"VIs per stock-year, all types ({intensity or 'unknown'} intensity)",
            len(vi_log) / stock_years,
            *VI_RATE_RANGE[intensity],
        )
    )
    tables["vi_counts"] = vi_log.groupby(["vi_type", "direction"]).size().rename("count").reset_index()
    done = vi_log.dropna(subset=["release_ts"])
    durations = (done["release_ts"] - done["trigger_ts"]).dt.total_seconds()
    # a VI still running when the closing call starts is released by the close: longer by design
    merged_into_close = per_day(
        krx.series_us(done["release_ts"]).to_numpy(),
        lambda day, ts: ts >= krx.epoch_us(day.closing_auction_start),
    ).astype(bool)
    series["vi_durations"] = pd.DataFrame({"seconds": durations[~merged_into_close]})
    if (~merged_into_close).any():
        in_range = ((durations >= 120) & (durations <= 150))[~merged_into_close].mean()
        facts.append(Fact("VI durations within 120-150 s", float(in_range), 1, 1, invariant=True))

    # post-release returns by cause
    post = post_release_returns(con, vi_log)
    if len(post):
        cause = post["cause"].fillna("none") if "cause" in post else pd.Series("unknown", index=post.index)
        post = post.assign(cause=cause)
        series["post_release"] = post[["cause", "ret"]]
        tables["post_release_by_cause"] = (
            post.groupby("cause")["ret"].agg(["count", "mean", "std", "median"]).reset_index()
        )

    # invariants on every trade
    on_grid, within, n_trades = _grid_and_limit_shares(con)
    facts.append(Fact("share of trades on the tick grid", on_grid, 1, 1, invariant=True))
    facts.append(Fact("share of trades within the daily limits", within, 1, 1, invariant=True))
    tables["dataset"] = pd.DataFrame(
        [
            {
                "stocks": n_stocks,
                "days": n_days,
                "trades": n_trades,
                "VIs": len(vi_log),
                "stock_years": round(stock_years, 3),
            }
        ]
    )
    return RealismResult(facts=facts, tables=tables, series=series)
