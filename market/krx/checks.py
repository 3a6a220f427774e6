"""Row checks of the KRX rules over a frame of ticks, shared by the realism check and the
Great Expectations suite. Each returns True for a valid row; only trade rows are judged."""

from __future__ import annotations

import pandas as pd

from market.krx.clock import seoul_dates
from market.krx.prices import MIDPOINT_ORDERS_FROM, is_on_grid_array, price_limits


def on_tick_grid(df: pd.DataFrame) -> pd.Series:
    """Trade prices are positive and on the tick grid of their market on their date, or half a
    tick off it for a continuous-session print since mid-point orders exist (columns event_type,
    price, market, timestamp, session)."""
    ok = pd.Series(True, index=df.index)
    sub = df[df["event_type"] == "trade"]
    for (market, day), g in sub.groupby([sub["market"], seoul_dates(sub["timestamp"])], observed=True):
        midpoint = (g["session"] == "continuous").to_numpy() & (day >= MIDPOINT_ORDERS_FROM)
        ok[g.index] = is_on_grid_array(g["price"].to_numpy(), market, day, midpoint)
    return ok


def within_daily_limits(df: pd.DataFrame) -> pd.Series:
    """Trade prices lie within the day's price limits (also needs base_price)."""
    ok = pd.Series(True, index=df.index)
    sub = df[df["event_type"] == "trade"]
    for (market, day, base), g in sub.groupby(
        [sub["market"], seoul_dates(sub["timestamp"]), sub["base_price"]], observed=True
    ):
        lower, upper = price_limits(int(base), market, day)
        ok[g.index] = g["price"].between(lower, upper).to_numpy()
    return ok
