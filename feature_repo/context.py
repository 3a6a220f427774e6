"""Stock context as of the previous close: one row per stock and session, computed only from
sessions before it and stamped at the session's own opening call (08:30, an hour later on CSAT
and new-year days): in the online store before the session opens, as a live day loads it, and
after every decision of the session before, a VI that the closing call released included (its
decisions come after 15:30; a stamp at that close would hand them the next session's context,
which holds their own day's close).

Daily bars come from the ticks (DuckDB); VIs from the events table. A row is also written for the
session after the data's last day, so that a live day starts with its context already in the store.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_repo.features.spec import SAME_DAY_UP, VS_BASE, feature_specs
from market import krx
from market.krx.dataset import connect, ticks_source

CONTEXT_DAYS = 20
VI_HISTORY_DAYS = 60

STOCK_CONTEXT = feature_specs(
    "stock_context",
    [
        ("ctx_volatility_20d", "std of daily log returns (close over 기준가), 20 sessions", True, 0.0),
        ("ctx_avg_value_20d_log", "log1p mean daily KRW traded, 20 sessions", True, 0.0),
        ("ctx_avg_volume_20d_log", "log1p mean daily shares traded, 20 sessions", True, 0.0),
        ("ctx_vis_60d", "VIs in the last 60 sessions", False, 0.0),
        ("ctx_vis_5d", "VIs in the last 5 sessions", False, 0.0),
        ("ctx_history_days", "sessions of history behind the row (of 60)", False, 0.0, 60.0),
        ("ctx_prev_close_log", "log of the previous close (기준가 without history)", False, 0.0),
        ("ctx_prev_return", "previous session's close over its 기준가, minus 1", True, *VS_BASE),
        ("ctx_prev_range", "previous session's (high - low) / close", True, *SAME_DAY_UP),
        ("ctx_tick_size", "tick size at the previous close, KRW (호가단위 band)", False, 1.0),
        ("ctx_tick_bp", "tick size over the previous close, basis points", False, 0.0, 1000.0),
        ("ctx_kosdaq", "listed on KOSDAQ", False, 0.0, 1.0),
        ("ctx_kospi200", "a KOSPI200 constituent", False, 0.0, 1.0),
    ],
)

DAILY_BARS_SQL = """
SELECT stock_code, CAST(timestamp AS DATE) AS day,
       arg_max(price, timestamp) AS close, max(price) AS high, min(price) AS low,
       sum(volume) AS volume, sum(CAST(price AS DOUBLE) * volume) AS value
FROM {ticks}
WHERE event_type = 'trade'
GROUP BY ALL
"""


def daily_bars(ticks_root: Path) -> pd.DataFrame:
    bars = connect().sql(DAILY_BARS_SQL.format(ticks=ticks_source(ticks_root))).df()
    return bars.assign(day=pd.to_datetime(bars["day"]).dt.date)


def context_time(day: dt.date) -> pd.Timestamp:
    """When session ``day``'s context becomes known: its opening call's start."""
    return pd.Timestamp(krx.session_schedule(day).opening_auction_start)


def context_rows(bars: pd.DataFrame, instruments: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per (stock, session) for the data's sessions and the one after; pure."""
    days = sorted(instruments["date"].unique())
    sessions = [*days, krx.next_trading_days(days[-1] + dt.timedelta(days=1), 1)[0]]
    base = instruments.set_index(["stock_code", "date"])
    bars = bars.merge(
        instruments.rename(columns={"date": "day"})[["stock_code", "day", "base_price"]], how="left"
    )
    vi_days = events.assign(day=krx.seoul_dates(events["trigger_ts"]))
    previous = {day: krx.previous_trading_day(day) for day in sessions}
    # the 60 sessions up to each session's previous one: the same for every stock
    window_60 = {
        day: krx.trading_days(prev - dt.timedelta(days=120), prev)[-VI_HISTORY_DAYS:]
        for day, prev in previous.items()
    }
    rows = []
    for code in sorted(instruments["stock_code"].unique()):
        stock_bars = bars[bars["stock_code"] == code].sort_values("day")
        listed = instruments[instruments["stock_code"] == code].sort_values("date").iloc[-1]
        stock_vis = np.sort(vi_days.loc[vi_days["stock_code"] == code, "day"].to_numpy())
        for day in sessions:
            before = stock_bars[stock_bars["day"] < day].tail(VI_HISTORY_DAYS)
            recent = before.tail(CONTEXT_DAYS)
            known = (code, day) in base.index
            listing = base.loc[(code, day)] if known else listed
            prev_close = float(recent["close"].iloc[-1]) if len(recent) else float(listing["base_price"])
            returns = np.log(recent["close"] / recent["base_price"]).to_numpy(dtype=float)
            tick = krx.tick_size(int(prev_close), listing["market"], day)
            last = recent.iloc[-1] if len(recent) else None
            rows.append(
                {
                    "stock_code": code,
                    "session": day,
                    "event_timestamp": context_time(day),
                    "ctx_volatility_20d": float(np.std(returns, ddof=1)) if len(returns) >= 2 else math.nan,
                    "ctx_avg_value_20d_log": math.log1p(recent["value"].mean()) if len(recent) else math.nan,
                    "ctx_avg_volume_20d_log": math.log1p(recent["volume"].mean())
                    if len(recent)
                    else math.nan,
                    "ctx_vis_60d": float(_count_between(stock_vis, window_60[day])),
                    "ctx_vis_5d": float(_count_between(stock_vis, window_60[day][-5:])),
                    "ctx_history_days": float(len(before)),
                    "ctx_prev_close_log": math.log(prev_close),
                    "ctx_prev_return": last["close"] / last["base_price"] - 1.0
                    if last is not None
                    else math.nan,
                    "ctx_prev_range": (last["high"] - last["low"]) / last["close"]
                    if last is not None
                    else math.nan,
                    "ctx_tick_size": float(tick),
                    "ctx_tick_bp": tick / prev_close * 1e4,
                    "ctx_kosdaq": float(listing["market"] == "KOSDAQ"),
                    "ctx_kospi200": float(bool(listing["kospi200"])),
                }
            )
    return pd.DataFrame(rows)


def _count_between(sorted_days: np.ndarray, window: list[dt.date]) -> int:
    if not window:
        return 0
    lo = np.searchsorted(sorted_days, window[0], side="left")
    hi = np.searchsorted(sorted_days, window[-1], side="right")
    return int(hi - lo)


def context_table(ticks_root: Path, instruments: pa.Table, events: pa.Table) -> pd.DataFrame:
    return context_rows(daily_bars(ticks_root), instruments.to_pandas(), events.to_pandas())
