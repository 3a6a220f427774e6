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
from market.synthetic.generator import DEFAULT_EDGE

RETURN_HORIZON_S = 300  # post-release return horizon of the by-cause table and plot
PREDICTABILITY_HORIZONS_S = (10, 60, 300)
AUC_HORIZON_S = 60  # continuation net of costs this long after the release, for the AUCs
STRENGTH_S = 5  # post-release trade strength: the first seconds after the release
# what a market without a free lunch shows (issue 13): a naive follower of every VI loses its
# costs, and no single observable known at the release decides the outcome
NO_FREE_LUNCH = (-np.inf, 0.0)
SINGLE_FEATURE_AUC = (0.3, 0.7)
MIN_PER_CLASS = 10  # VIs that continue and VIs that do not, before an AUC is measured
ORACLE_MARGIN = 0.05  # the oracle stays clearly above what the observables give
# VIs per stock-year: about 5 in a normal market (a few to 20 by name), far more in "hot" data
VI_RATE_RANGE = {"normal": (1.0, 20.0), "hot": (50.0, 5_000.0), None: (0.5, 5_000.0)}
INFO = (-np.inf, np.inf)
RETURN_AC_RANGE = (-0.15, 0.1)


@dataclass
class Fact:
    name: str
    value: float
    low: float
    high: float
    invariant: bool = False  # a broken invariant fails the check; a fact out of range only warns

    @property
    def expected(self) -> str:
        if np.isfinite(self.low) and np.isfinite(self.high):
            return f"{self.low:,.4g} .. {self.high:,.4g}"
        if np.isfinite(self.high):
            return f"<= {self.high:,.4g}"
        return f">= {self.low:,.4g}" if np.isfinite(self.low) else "(information)"

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
    """Log returns of 1-minute bars of the continuous session, per stock-day, on a regular clock.

    A bar's close is the last trade price up to the minute's end, carried through minutes without
    a trade (a VI auction's two halted minutes return 0 and its uncross lands in its own minute).
    Skipping silent minutes instead would pair the run-up to a VI with the auction's outcome as if
    they were consecutive minutes, and inflate the lag-1 autocorrelation.
    """
    return con.execute("""
        WITH m AS (
            SELECT stock_code, CAST(timestamp AS DATE) AS day, date_trunc('minute', timestamp) AS minute,
                   arg_max(price, timestamp) AS close
            FROM ticks WHERE event_type = 'trade' AND session = 'continuous'
            GROUP BY ALL),
        span AS (SELECT stock_code, day, min(minute) AS first, max(minute) AS last FROM m GROUP BY ALL),
        clock AS (
            SELECT stock_code, day,
                   unnest(range(first, last + INTERVAL 1 MINUTE, INTERVAL 1 MINUTE)) AS minute
            FROM span),
        bars AS (
            SELECT c.stock_code, c.day, c.minute, m.close
            FROM clock c ASOF JOIN m
                ON c.stock_code = m.stock_code AND c.day = m.day AND c.minute >= m.minute)
        SELECT stock_code, day, minute,
               ln(close / lag(close) OVER (PARTITION BY stock_code, day ORDER BY minute)) AS r
        FROM bars QUALIFY r IS NOT NULL ORDER BY stock_code, day, minute
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


def _generated(root: Path) -> dict:
    """How a synthetic dataset was generated (intensity, edge); {} for other data."""
    summary = root / "generate_summary.json"
    return json.loads(summary.read_text()) if summary.exists() else {}


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


_PREDICTABILITY_SQL = """
WITH trades AS (
    SELECT stock_code, timestamp, price, volume, side FROM ticks
    WHERE event_type = 'trade' AND stock_code IN (SELECT DISTINCT stock_code FROM targets)
),
priced AS (
    SELECT g.key, g.horizon_s, t.price
    FROM targets g ASOF LEFT JOIN trades t
      ON g.stock_code = t.stock_code AND g.target_ts >= t.timestamp
),
indicative AS (
    SELECT v.key, arg_min(t.price, t.timestamp) AS first_ind, arg_max(t.price, t.timestamp) AS last_ind
    FROM vis v JOIN ticks t
      ON t.stock_code = v.stock_code AND t.event_type = 'indicative' AND t.price > 0
     AND t.timestamp >= v.trigger_ts AND t.timestamp < v.release_ts
    GROUP BY v.key
),
strength AS (
    SELECT v.key,
           sum(CASE WHEN t.side = 1 THEN t.volume ELSE 0 END) AS buy,
           sum(CASE WHEN t.side = -1 THEN t.volume ELSE 0 END) AS sell
    FROM vis v JOIN trades t
      ON t.stock_code = v.stock_code AND t.timestamp > v.release_ts
     AND t.timestamp <= v.release_ts + INTERVAL {strength_s} SECOND
    GROUP BY v.key
)
SELECT v.key, p.horizon_s, p.price, i.first_ind, i.last_ind, s.buy, s.sell
FROM vis v JOIN priced p ON p.key = v.key
LEFT JOIN indicative i ON i.key = v.key LEFT JOIN strength s ON s.key = v.key
"""


def _auc(label: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUC, its standard error by Hanley and McNeil's approximation); NaN unless each outcome
    occurs MIN_PER_CLASS times (with a handful of VIs, a perfect AUC is luck and its standard
    error by the approximation is 0)."""
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(score)
    label, score = label[ok], score[ok]
    pos, neg = int(label.sum()), int(len(label) - label.sum())
    if min(pos, neg) < MIN_PER_CLASS:
        return np.nan, np.nan
    a = float(roc_auc_score(label, score))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = np.sqrt((a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a)) / (pos * neg))
    return a, float(se)


def _returns_summary(long: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = long.groupby(keys)
    return pd.DataFrame(
        {
            "VIs": g.size(),
            "mean_gross": g["gross"].mean(),
            "mean_net": g["net"].mean(),
            "se_mean": g["net"].std() / np.sqrt(g.size()),
            "continue_share": g["continues"].mean(),
        }
    ).reset_index()


def vi_predictability(
    con: duckdb.DuckDBPyConnection, vi_log: pd.DataFrame, instruments: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """How easy the market makes a VI: (per VI and horizon, returns, aucs).

    ``per VI and horizon``: cause, horizon_s, the gross and net return from the auction price in
    the VI's direction and whether it continues net of costs. ``returns``, by cause and horizon
    (10, 60, 300 s after the release): VIs, the mean return gross and net of the round-trip cost
    and its standard error, and the share that continue net of costs (the base rate). ``aucs``:
    the AUC (and its standard error) for that continuation at 60 s of single observables known at
    the release (the auction price over the trigger, the indicative price's drift in the auction,
    both signed in the VI's direction), of the trade strength of the first 5 s after it (for the
    continuation from there), and of the latent drift (the synthetic market's oracle, where the
    VI log has it)."""
    released = vi_log.dropna(subset=["release_ts", "auction_price"]).reset_index(drop=True)
    empty = pd.DataFrame()
    if released.empty:
        return empty, empty, empty
    released = released.assign(key=np.arange(len(released)), day=released["trigger_ts"].dt.date)
    inst = instruments[["date", "stock_code", "market"]].rename(columns={"date": "day"})
    released = released.merge(inst, on=["day", "stock_code"], how="left")
    costs = krx.CostModel()
    released["cost"] = [
        costs.round_trip_rate(m, d)
        for m, d in zip(released["market"].fillna("KOSPI"), released["day"], strict=True)
    ]
    horizons = (0, STRENGTH_S, *PREDICTABILITY_HORIZONS_S, STRENGTH_S + AUC_HORIZON_S)
    targets = pd.DataFrame(
        {
            "key": np.repeat(released["key"].to_numpy(), len(horizons)),
            "horizon_s": np.tile(horizons, len(released)),
            "stock_code": np.repeat(released["stock_code"].to_numpy(), len(horizons)),
            "release_ts": released["release_ts"].repeat(len(horizons)).to_numpy(),
        }
    )
    targets["target_ts"] = targets["release_ts"] + pd.to_timedelta(targets["horizon_s"], unit="s")
    con.register("targets", targets)
    con.register("vis", released[["key", "stock_code", "trigger_ts", "release_ts"]])
    rows = con.execute(_PREDICTABILITY_SQL.format(strength_s=STRENGTH_S)).df()
    price = rows.pivot(index="key", columns="horizon_s", values="price").reindex(released["key"])
    first = rows.groupby("key")[["first_ind", "last_ind", "buy", "sell"]].first().reindex(released["key"])
    direction, auction = released["direction"].to_numpy(float), released["auction_price"].to_numpy(float)
    cost = released["cost"].to_numpy()
    cause = (
        released["cause"].fillna("none")
        if "cause" in released
        else pd.Series("unknown", index=released.index)
    )
    gross = {h: direction * (price[h].to_numpy(float) / auction - 1.0) for h in PREDICTABILITY_HORIZONS_S}
    parts = [
        pd.DataFrame({"cause": cause, "horizon_s": h, "gross": g, "net": g - cost}) for h, g in gross.items()
    ]
    long = pd.concat(parts).dropna(subset=["gross"])
    long["continues"] = long["net"] > 0
    returns = pd.concat(
        [
            _returns_summary(long, ["horizon_s", "cause"]),
            _returns_summary(long, ["horizon_s"]).assign(cause="all"),
        ]
    ).sort_values(["horizon_s", "cause"], ignore_index=True)
    continues = gross[AUC_HORIZON_S] - cost > 0
    later = direction * (
        price[STRENGTH_S + AUC_HORIZON_S].to_numpy(float) / price[STRENGTH_S].to_numpy(float) - 1.0
    )
    buy, sell = first["buy"].fillna(0).to_numpy(float), first["sell"].fillna(0).to_numpy(float)
    trigger = released["trigger_price"].to_numpy(float)
    indicative_drift = first["last_ind"].to_numpy(float) - first["first_ind"].to_numpy(float)
    observables = [  # (what, its score, the continuation it is judged on)
        ("auction price over trigger, VI direction", direction * (auction / trigger - 1.0), continues),
        ("indicative drift in the auction, VI direction", direction * indicative_drift / trigger, continues),
        (
            f"trade strength, first {STRENGTH_S} s after the release, VI direction",
            direction * np.log((buy + 1.0) / (sell + 1.0)),
            later - cost > 0,
        ),
    ]
    kinds = ["observable"] * len(observables)
    if "latent_drift" in released:
        observables.append(
            ("latent drift (oracle)", direction * released["latent_drift"].to_numpy(float), continues)
        )
        kinds.append("oracle")
    aucs = [
        {"measure": m, "kind": kind, **dict(zip(("auc", "se"), _auc(label, score), strict=True))}
        for (m, score, label), kind in zip(observables, kinds, strict=True)
    ]
    return long, returns, pd.DataFrame(aucs)


def _predictability_facts(
    con: duckdb.DuckDBPyConnection,
    vi_log: pd.DataFrame,
    instruments: pd.DataFrame,
    edge: str | None,
    tables: dict[str, pd.DataFrame],
    series: dict[str, pd.DataFrame],
) -> list[Fact]:
    """The no-free-lunch targets, each widened by two standard errors of its sample. On a market
    generated with the default edge they must hold (the check fails otherwise); elsewhere they
    show how far the data is from them. Also the RETURN_HORIZON_S returns by cause, for the plot."""
    per_vi, returns, aucs = vi_predictability(con, vi_log, instruments)
    enforced = edge == DEFAULT_EDGE
    facts = []
    if len(returns):
        post = per_vi.loc[per_vi["horizon_s"] == RETURN_HORIZON_S, ["cause", "gross"]].rename(
            columns={"gross": "ret"}
        )
        series["post_release"] = post
        tables["post_release_by_cause"] = (
            post.groupby("cause")["ret"].agg(["count", "mean", "std", "median"]).reset_index()
        )
        tables["vi_predictability_returns"] = returns
        overall = returns[returns["cause"] == "all"].set_index("horizon_s")
        for h in overall.index:
            row = overall.loc[h]
            facts.append(
                Fact(
                    f"mean return {h} s after a VI's release, in its direction, net of costs",
                    float(row["mean_net"]),
                    -np.inf,
                    # a single VI has no standard error: its return is shown, not held to a bound
                    NO_FREE_LUNCH[1] + 2 * float(np.nan_to_num(row["se_mean"], nan=np.inf)),
                    invariant=enforced,
                )
            )
    if len(aucs):
        tables["vi_predictability_auc"] = aucs
    # an AUC needs both outcomes among the VIs (not so among a normal market's few VIs)
    observables = aucs[(aucs["kind"] == "observable") & aucs["auc"].notna()] if len(aucs) else aucs
    if len(observables):
        observable = observables.sort_values("auc").iloc[-1]
        # the best of k measures is held to a family-wise bound (Bonferroni): with k of them, the
        # largest exceeds 2 standard errors by chance more often than one measure does
        z = float(stats.norm.ppf(1 - 0.025 / len(observables)))
        facts.append(
            Fact(
                f"best single-observable AUC, {AUC_HORIZON_S}-s continuation ({observable['measure']})",
                float(observable["auc"]),
                -np.inf,
                min(1.0, SINGLE_FEATURE_AUC[1] + z * float(observable["se"])),
                invariant=enforced,
            )
        )
        oracle = aucs[aucs["kind"] == "oracle"]
        if len(oracle):
            facts.append(
                Fact(
                    "latent-drift oracle AUC minus the best observable's",
                    float(oracle["auc"].iloc[0] - observable["auc"]),
                    ORACLE_MARGIN,
                    1.0,
                )
            )
    return facts


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
    # near zero, or slightly negative from the bid-ask bounce, over all minutes and away from VIs
    # (10 minutes either side)
    calm = rets[~_near_vi(rets, vi_log, minutes=10)]
    facts.append(Fact("autocorrelation of 1-min returns, lag 1, all minutes", _lag1(rets), *RETURN_AC_RANGE))
    facts.append(
        Fact("autocorrelation of 1-min returns, lag 1, minutes away from VIs", _lag1(calm), *RETURN_AC_RANGE)
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
    generated = _generated(root)
    intensity = generated.get("intensity")
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

    # how easy the market makes a VI: returns after the release by cause, the base rate, AUCs
    facts += _predictability_facts(con, vi_log, instruments, generated.get("edge"), tables, series)

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
