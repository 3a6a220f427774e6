"""What a run earned, from the account: one trade per position lot (``backtest.account``: FIFO, open
lots marked at the bid net of exit costs), daily P&L and drawdown from the account's equity marked
every second while exposed, and the usual measures with bootstrap intervals that resample whole
days (VIs cluster on storm days: trades of one day are not independent draws).

Sharpe and Sortino of daily P&L are shown only from :data:`MIN_DAYS_FOR_RATIOS` trading days up;
below that the table says "n/a: N days".
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from market.krx.clock import seoul_date

BOOTSTRAP = 1000
TRADING_DAYS_PER_YEAR = 252
MIN_DAYS_FOR_RATIOS = 20
CONTINUOUS_SECONDS_PER_DAY = 22_800  # 09:00-15:20: the time a position could be held


def daily_pnl(equity: pd.DataFrame, days: list[dt.date], capital: float) -> pd.Series:
    """Net P&L of each day of the period from the account's equity (its last sample of the day
    against the last one before; 0 on a day nothing was held or sent)."""
    if equity.empty:
        return pd.Series({d: 0.0 for d in days})
    ts = equity["ts"]
    us = ts.astype("int64") // 1000 if pd.api.types.is_datetime64_any_dtype(ts) else ts
    by_day = pd.Series(equity["equity"].to_numpy(dtype=float), index=[seoul_date(int(t)) for t in us])
    close = by_day.groupby(level=0).last()
    out, before = {}, float(capital)
    for d in days:
        if d in close.index:
            out[d] = float(close[d]) - before
            before = float(close[d])
        else:
            out[d] = 0.0
    return pd.Series(out)


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


def _sharpe(r: np.ndarray) -> float:
    sd = r.std(ddof=1) if len(r) > 1 else 0.0
    return float(r.mean() / sd * np.sqrt(TRADING_DAYS_PER_YEAR)) if sd > 0 else float("nan")


def _sortino(r: np.ndarray) -> float:
    down = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) if len(r) > 1 else 0.0
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


def _day_blocks(
    values: np.ndarray, day_of: np.ndarray, stat, rng: np.random.Generator, n: int
) -> tuple[float, float]:
    """95% interval of ``stat`` over ``values`` resampling whole days (``day_of``: each value's day
    index) with replacement."""
    days = np.unique(day_of)
    if len(days) < 2 or n <= 0:
        return float("nan"), float("nan")
    members = [values[day_of == d] for d in days]
    draws = []
    for _ in range(n):
        picked = rng.integers(0, len(days), len(days))
        draws.append(stat(np.concatenate([members[i] for i in picked])))
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def summarize(
    trades: pd.DataFrame,
    fills: pd.DataFrame,
    equity: pd.DataFrame,
    days: list[dt.date],
    capital: float,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """One strategy's measures. ``trades``: its lots (:func:`backtest.account.trade_table`, open
    ones included); per-trade and per-day measures carry (lo, hi) 95% day-block intervals."""
    rng = np.random.default_rng(seed)
    pnl = trades["pnl"].to_numpy(dtype=float)
    ret = trades["net_return"].to_numpy(dtype=float)
    day_of = np.array([seoul_date(int(t)).toordinal() for t in trades["entry_ts"]], dtype=np.int64)
    daily = daily_pnl(equity, days, capital).to_numpy() / capital
    held = time_in_market(trades["entry_ts"].to_numpy(), trades["exit_ts"].to_numpy()) / 1e6
    traded = float((fills["qty"] * fills["price"]).sum()) if len(fills) else 0.0
    curve = equity["equity"].to_numpy(dtype=float) if len(equity) else np.array([capital])

    def ci(values, stat):
        return (stat(values), *_day_blocks(values, day_of, stat, rng, bootstrap))

    ratios = len(days) >= MIN_DAYS_FOR_RATIOS
    day_index = np.arange(len(daily))
    return {
        "trades": len(trades),
        "open_at_end": int((trades["status"] == "open").sum()) if len(trades) else 0,
        "win_rate": ci(pnl, _win_rate),
        "mean_net_return": ci(ret, _mean),
        "median_net_return": ci(ret, _median),
        "profit_factor": ci(pnl, _profit_factor),
        "net_pnl": float(pnl.sum()),
        "costs": float(trades["costs"].sum()) if len(trades) else 0.0,
        "days": len(days),
        "sharpe": (_sharpe(daily), *_day_blocks(daily, day_index, _sharpe, rng, bootstrap))
        if ratios
        else None,
        "sortino": (_sortino(daily), *_day_blocks(daily, day_index, _sortino, rng, bootstrap))
        if ratios
        else None,
        "max_drawdown": max_drawdown(np.r_[capital, curve]),
        "exposure": float(held / (CONTINUOUS_SECONDS_PER_DAY * max(len(days), 1))),
        "turnover": float(traded / capital / max(len(days), 1)),
    }


def by_group(trades: pd.DataFrame, groups: pd.DataFrame, column: str) -> pd.DataFrame:
    """Trades, win rate, mean net return and net P&L per value of ``column`` of ``groups``
    (one row per event_id; a trade belongs to the event its lot was opened for)."""
    if trades.empty:
        return pd.DataFrame(columns=[column, "trades", "win_rate", "mean_net_return", "net_pnl"])
    t = trades.merge(groups[["event_id", column]], on="event_id", how="left")
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


def _num(v: tuple | None, days: int = 0) -> str:
    if v is None:
        return f"n/a: {days} day{'s' if days != 1 else ''}"
    x, lo, hi = v
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "")


def compare_runs(runs: dict, groups: pd.DataFrame, days: list[dt.date], capital: float) -> dict:
    """``runs``: {(strategy, latency name): RunResult}. The comparison table (display strings), the
    measures as JSON, the trades (lots) and splits by cause, VI type and direction per run."""
    rows, js, trades_by_run = [], {}, {}
    for (name, latency), run in runs.items():
        trades = run.lots_frame()
        m = summarize(trades, run.trades_frame(), run.equity_frame(), days, capital)
        splits = {c: by_group(trades, groups, c) for c in ("cause", "vi_type", "direction")}
        trades_by_run[(name, latency)] = trades
        js[f"{name} | {latency} latency"] = m | {
            "rejections": len(run.rejections),
            "by": {c: s.to_dict("records") for c, s in splits.items()},
        }
        rows.append(
            {
                "strategy": name,
                "latency": latency,
                "trades": m["trades"],
                "open at end": m["open_at_end"],
                "win rate": _pct(m["win_rate"], sign=""),
                "mean net": _pct(m["mean_net_return"]),
                "median net": _pct(m["median_net_return"]),
                "profit factor": _num(m["profit_factor"]),
                "Sharpe (ann.)": _num(m["sharpe"], len(days)),
                "Sortino (ann.)": _num(m["sortino"], len(days)),
                "max DD": _pct(m["max_drawdown"]),
                "exposure": _pct(m["exposure"]),
                "turnover/day": f"{m['turnover']:.2f}",
                "net P&L (KRW)": f"{m['net_pnl']:+,.0f}",
            }
        )
    return {"table": pd.DataFrame(rows), "json": js, "trades": trades_by_run}
