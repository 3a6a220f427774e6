"""What a run earned, net of costs: round trips from fills, daily P&L, and the usual measures with
bootstrap confidence intervals (round trips resampled for the per-trade measures, days for the
per-day ones)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from market.krx.clock import seoul_date

BOOTSTRAP = 1000
TRADING_DAYS_PER_YEAR = 252
CONTINUOUS_SECONDS_PER_DAY = 22_800  # 09:00-15:20: the time a position could be held


def round_trips(trades: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, event) whose buys were all sold again: entry and exit times, bought
    amount, net P&L (sale proceeds minus purchase, brokerage both ways and the sell tax), net return
    on the bought amount, and the exit's reason."""
    if trades.empty:
        return pd.DataFrame(
            columns=[
                "strategy",
                "event_id",
                "stock_code",
                "entry_ts",
                "exit_ts",
                "bought",
                "pnl",
                "net_return",
                "exit_reason",
                "costs",
            ]
        )
    t = trades.copy()
    sign = np.where(t["side"] == "buy", 1, -1)
    t["signed_qty"] = sign * t["qty"]
    t["amount"] = t["qty"] * t["price"]
    t["flow"] = -sign * t["amount"] - t["brokerage"] - t["tax"]
    t["buy_amount"] = np.where(sign > 0, t["amount"], 0)
    t["fill_us"] = t["fill_ts"].astype("int64") // 1000 if t["fill_ts"].dt.tz is not None else t["fill_ts"]
    g = t.sort_values("fill_ts").groupby(["strategy", "event_id"], sort=False)
    out = g.agg(
        stock_code=("stock_code", "first"),
        entry_ts=("fill_us", "first"),
        exit_ts=("fill_us", "last"),
        bought=("buy_amount", "sum"),
        pnl=("flow", "sum"),
        net_qty=("signed_qty", "sum"),
        exit_reason=("reason", "last"),
        costs=("brokerage", "sum"),
        tax=("tax", "sum"),
    ).reset_index()
    out = out[(out["net_qty"] == 0) & (out["bought"] > 0)].copy()
    out["costs"] = out["costs"] + out.pop("tax")
    out["net_return"] = out["pnl"] / out["bought"]
    return out.drop(columns="net_qty").reset_index(drop=True)


def _sharpe(r: np.ndarray) -> float:
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    return float(r.mean() / sd * np.sqrt(TRADING_DAYS_PER_YEAR)) if sd > 0 else float("nan")


def _sortino(r: np.ndarray) -> float:
    down = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) if len(r) > 1 else 0.0  # one day says nothing
    return float(r.mean() / down * np.sqrt(TRADING_DAYS_PER_YEAR)) if down > 0 else float("nan")


def _profit_factor(pnl: np.ndarray) -> float:
    loss = -pnl[pnl < 0].sum()
    return float(pnl[pnl > 0].sum() / loss) if loss > 0 else float("nan")


def _win_rate(pnl: np.ndarray) -> float:
    return float((pnl > 0).mean()) if len(pnl) else float("nan")


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else float("nan")


def _ci(values: np.ndarray, stat, rng: np.random.Generator, n: int) -> tuple[float, float]:
    if len(values) < 2 or n <= 0:
        return float("nan"), float("nan")
    draws = np.array([stat(values[rng.integers(0, len(values), len(values))]) for _ in range(n)])
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def daily_pnl(trips: pd.DataFrame, days: list[dt.date]) -> pd.Series:
    """Net P&L by the day each round trip closed, every day of the period present (0 if idle)."""
    by_day = trips.groupby(trips["exit_ts"].map(lambda t: seoul_date(int(t))))["pnl"].sum()
    return pd.Series({d: float(by_day.get(d, 0.0)) for d in days})


def time_in_market(entries: np.ndarray, exits: np.ndarray) -> float:
    """How long at least one position was open: the length of the union of [entry, exit] spans."""
    total, end = 0.0, -np.inf
    for a, b in sorted(zip(entries.tolist(), exits.tolist(), strict=True)):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a fraction of the peak."""
    if not len(equity):
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max((peak - equity) / peak))


def summarize(
    trips: pd.DataFrame,
    trades: pd.DataFrame,
    equity: pd.DataFrame,
    days: list[dt.date],
    capital: float,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """One strategy's measures; per-trade and per-day measures carry (lo, hi) 95% intervals."""
    rng = np.random.default_rng(seed)
    pnl = trips["pnl"].to_numpy(dtype=float)
    ret = trips["net_return"].to_numpy(dtype=float)
    daily = daily_pnl(trips, days).to_numpy() / capital
    held = time_in_market(trips["entry_ts"].to_numpy(), trips["exit_ts"].to_numpy()) / 1e6
    traded = float((trades["qty"] * trades["price"]).sum()) if len(trades) else 0.0
    out = {
        "trades": len(trips),
        "win_rate": (_win_rate(pnl), *_ci(pnl, _win_rate, rng, bootstrap)),
        "mean_net_return": (_mean(ret), *_ci(ret, _mean, rng, bootstrap)),
        "median_net_return": (_median(ret), *_ci(ret, _median, rng, bootstrap)),
        "profit_factor": (_profit_factor(pnl), *_ci(pnl, _profit_factor, rng, bootstrap)),
        "net_pnl": float(pnl.sum()),
        "costs": float(trips["costs"].sum()) if len(trips) else 0.0,
        "sharpe": (_sharpe(daily), *_ci(daily, _sharpe, rng, bootstrap)),
        "sortino": (_sortino(daily), *_ci(daily, _sortino, rng, bootstrap)),
        "max_drawdown": max_drawdown(equity["equity"].to_numpy(dtype=float)) if len(equity) else 0.0,
        "exposure": float(held / (CONTINUOUS_SECONDS_PER_DAY * max(len(days), 1))),
        "turnover": float(traded / capital / max(len(days), 1)),
    }
    return out


def by_group(trips: pd.DataFrame, groups: pd.DataFrame, column: str) -> pd.DataFrame:
    """Trades, win rate, mean net return and net P&L per value of ``column`` of ``groups``
    (one row per event_id)."""
    if trips.empty:
        return pd.DataFrame(columns=[column, "trades", "win_rate", "mean_net_return", "net_pnl"])
    t = trips.merge(groups[["event_id", column]], on="event_id", how="left")
    t[column] = t[column].astype("string").fillna("unknown")
    return (
        t.groupby(column)
        .agg(
            trades=("pnl", "size"),
            win_rate=("pnl", lambda x: float((x > 0).mean())),
            mean_net_return=("net_return", "mean"),
            net_pnl=("pnl", "sum"),
        )
        .reset_index()
    )


def _pct(v: tuple | float, sign: str = "+") -> str:
    if isinstance(v, tuple):
        x, lo, hi = v
        if not np.isfinite(x):
            return "n/a"
        return f"{x:{sign}.2%}" + (f" [{lo:{sign}.2%}, {hi:{sign}.2%}]" if np.isfinite(lo) else "")
    return f"{v:.2%}"


def _num(v: tuple) -> str:
    x, lo, hi = v
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "")


def compare_runs(runs: dict, groups: pd.DataFrame, days: list[dt.date], capital: float) -> dict:
    """``runs``: {(strategy, latency name): RunResult}. The comparison table (display strings), the
    measures as JSON, round trips and splits by cause, VI type and direction per run."""
    rows, js, trips_by_run = [], {}, {}
    for (name, latency), run in runs.items():
        trades = run.trades_frame()
        trips = round_trips(trades)
        m = summarize(trips, trades, run.equity_frame(), days, capital)
        splits = {c: by_group(trips, groups, c) for c in ("cause", "vi_type", "direction")}
        trips_by_run[(name, latency)] = trips
        js[f"{name} | {latency} latency"] = m | {
            "rejections": len(run.rejections),
            "open_at_end": int(sum(q > 0 for q in run.account.positions.values())),
            "by": {c: s.to_dict("records") for c, s in splits.items()},
        }
        rows.append(
            {
                "strategy": name,
                "latency": latency,
                "trades": m["trades"],
                "win rate": _pct(m["win_rate"], sign=""),
                "mean net": _pct(m["mean_net_return"]),
                "median net": _pct(m["median_net_return"]),
                "profit factor": _num(m["profit_factor"]),
                "Sharpe (ann.)": _num(m["sharpe"]),
                "Sortino (ann.)": _num(m["sortino"]),
                "max DD": _pct(m["max_drawdown"]),
                "exposure": _pct(m["exposure"]),
                "turnover/day": f"{m['turnover']:.2f}",
                "net P&L (KRW)": f"{m['net_pnl']:+,.0f}",
            }
        )
    return {"table": pd.DataFrame(rows), "json": js, "trips": trips_by_run}
