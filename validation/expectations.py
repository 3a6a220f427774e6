"""Custom Great Expectations for KRX tick data: row-level (multicolumn map) expectations whose
conditions come from the one home of the rules, ``market.krx``.

Importing this module registers the expectations with GX; import it before loading a suite.
Every condition is vectorised pandas over the batch (one partition file at a time) and returns
True for a valid row.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import MulticolumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider import (
    MulticolumnMapMetricProvider,
    multicolumn_condition_partial,
)

from market import krx
from market.krx.checks import on_tick_grid, within_daily_limits
from market.krx.schema import EVENT_TYPES, SIDES, VI_TYPES
from market.krx.sessions import SESSIONS, SessionSchedule, per_day

BOOK_VOLUMES = [f"{s}_volume_{i}" for s in ("bid", "ask") for i in range(1, 11)]
_DOMAIN_KEYS = ("batch_id", "table", "column_list", "row_condition", "condition_parser", "ignore_row_if")


def bid_below_ask_in_continuous(df: pd.DataFrame) -> pd.Series:
    """Not judged while the opening call may still run: in 09:00:00-09:00:30 (its random end)
    before the stock's first print of the day, rows a source labels by the clock call continuous
    may show the call's crossed book."""
    both = (df["bid_price_1"] > 0) & (df["ask_price_1"] > 0)
    checked = (df["session"] == "continuous") & (df["vi_status"] == 0) & both
    bad = checked & (df["bid_price_1"] >= df["ask_price_1"])
    if bad.any():  # the few crossed rows: did the opening call still run?
        printed = (df["event_type"] == "trade").groupby(df["stock_code"], observed=True).cummax()
        us = krx.series_us(df.loc[bad, "timestamp"]).to_numpy()
        in_window = per_day(us, SessionSchedule.in_opening_random_end).astype(bool)
        bad[bad] = ~(in_window & ~printed[bad].to_numpy())
    return ~bad


def book_levels_monotone(df: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for i in range(1, 10):
        nb, na = df[f"bid_price_{i + 1}"], df[f"ask_price_{i + 1}"]
        ok &= (nb == 0) | (df[f"bid_price_{i}"] > nb)
        ok &= (na == 0) | (df[f"ask_price_{i}"] < na)
    return ok


def book_volumes_non_negative(df: pd.DataFrame) -> pd.Series:
    return (df[BOOK_VOLUMES] >= 0).all(axis=1)


def cum_volume_continuous(df: pd.DataFrame) -> pd.Series:
    """Each trade's cum_volume is the previous trade's plus its volume (a jump means dropped
    ticks: the row after the gap fails). The first trade may carry more than its own volume: a
    recording that starts mid-session begins with the day's volume so far (KIS ACML_VOL)."""
    ok = pd.Series(True, index=df.index)
    trades = df[df["event_type"] == "trade"]
    prev = trades.groupby("stock_code", observed=True)["cum_volume"].shift(1)
    first = prev.isna().to_numpy()
    cum, volume = trades["cum_volume"].to_numpy(), trades["volume"].to_numpy()
    ok[trades.index] = np.where(first, cum >= volume, cum == prev.fillna(0).to_numpy() + volume)
    return ok


def no_trade_in_vi_auction(df: pd.DataFrame) -> pd.Series:
    return ~((df["event_type"] == "trade") & (df["vi_status"] == 1))


def session_matches_clock(df: pd.DataFrame) -> pd.Series:
    """The label fits the day's schedule (:meth:`market.krx.SessionSchedule.label_fits`)."""
    us = krx.series_us(df["timestamp"]).to_numpy()
    fits = per_day(us, SessionSchedule.label_fits, df["session"].astype(object).to_numpy())
    # a static VI at the open extends the opening call past the open: its rows are flagged
    flagged = (df["session"] == "continuous") & (df["vi_status"] > 0)
    return pd.Series(fits.astype(bool), index=df.index) | flagged


def timestamps_non_decreasing(df: pd.DataFrame) -> pd.Series:
    prev = df.groupby("stock_code", observed=True)["timestamp"].shift(1)
    return prev.isna() | (df["timestamp"] >= prev)


# Findings about a partition's sequence, not faults of a row: dropped trades show as a jump in
# cum_volume at the good trade after them, a row out of time order makes its neighbour look wrong.
# They are reported (each gap with its size) and the rows around them kept.
SEQUENCE_RULES = ("cum_volume_continuous", "timestamps_non_decreasing")


def cum_volume_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Each jump in cum_volume: the trade after it and the shares missing before it (negative:
    more counted than traded, a repeated trade)."""
    trades = df[df["event_type"] == "trade"]
    prev = trades.groupby("stock_code", observed=True)["cum_volume"].shift(1)
    missing = trades["cum_volume"] - prev - trades["volume"]
    gap = prev.notna() & (missing != 0)
    return pd.DataFrame(
        {
            "stock_code": trades.loc[gap, "stock_code"].astype(str),
            "timestamp": trades.loc[gap, "timestamp"],
            "missing_shares": missing[gap].astype("int64"),
        }
    ).reset_index(drop=True)


def _make(name: str, rule, doc: str, skip_nulls: bool = False) -> type[MulticolumnMapExpectation]:
    """One metric provider and one expectation class per row rule (GX registers both by name).
    ``skip_nulls``: a row with a null in the rule's columns is not judged (the tick rules: such a
    row is the not-null expectations' to reject, and the rules read whole rows)."""
    metric = f"multicolumn_values.krx_{name}"

    class _Metric(MulticolumnMapMetricProvider):
        condition_metric_name = metric
        condition_domain_keys = _DOMAIN_KEYS
        condition_value_keys = ()

        @multicolumn_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column_list: pd.DataFrame, **kwargs) -> pd.Series:
            ok = pd.Series(True, index=column_list.index)
            complete = column_list.notna().all(axis=1) if skip_nulls else None
            if complete is None or complete.all():
                ok[:] = np.asarray(rule(column_list), dtype=bool)
            else:
                ok[complete] = np.asarray(rule(column_list[complete]), dtype=bool)
            return ok

    _Metric.__name__ = f"KrxMetric_{name}"
    camel = "".join(part.capitalize() for part in name.split("_"))
    expectation = type(
        f"ExpectKrx{camel}",
        (MulticolumnMapExpectation,),
        {
            "__doc__": doc,
            "map_metric": metric,
            "success_keys": ("mostly",),
            "__annotations__": {
                "ignore_row_if": Literal["all_values_are_missing", "any_value_is_missing", "never"]
            },
            "ignore_row_if": "never",
        },
    )
    return expectation


ROW_EXPECTATIONS: dict[str, tuple[type[MulticolumnMapExpectation], list[str]]] = {}
for _name, _rule, _cols, _doc in [
    (
        "price_on_tick_grid",
        on_tick_grid,
        ["price", "market", "timestamp", "event_type", "session"],
        "Trade prices are positive and on the KRX tick grid of their market and date (half a tick "
        "off it in the continuous session since mid-point orders, 2025-03-04).",
    ),
    (
        "price_within_daily_limits",
        within_daily_limits,
        ["price", "market", "timestamp", "event_type", "base_price"],
        "Trade prices lie within the day's price limits (가격제한폭).",
    ),
    (
        "bid_below_ask_in_continuous",
        bid_below_ask_in_continuous,
        ["bid_price_1", "ask_price_1", "session", "vi_status", "timestamp", "event_type", "stock_code"],
        "Best bid is below best ask in continuous trading outside VI auctions.",
    ),
    (
        "book_levels_monotone",
        book_levels_monotone,
        [f"{s}_price_{i}" for s in ("bid", "ask") for i in range(1, 11)],
        "Bid levels fall and ask levels rise.",
    ),
    (
        "book_volumes_non_negative",
        book_volumes_non_negative,
        BOOK_VOLUMES,
        "Book quantities are not negative.",
    ),
    (
        "cum_volume_continuous",
        cum_volume_continuous,
        ["stock_code", "event_type", "volume", "cum_volume"],
        "cum_volume is the running sum of trade volume (a gap means dropped ticks).",
    ),
    (
        "no_trade_in_vi_auction",
        no_trade_in_vi_auction,
        ["event_type", "vi_status"],
        "Nothing trades during a VI auction except its uncross.",
    ),
    (
        "session_matches_clock",
        session_matches_clock,
        ["timestamp", "session", "vi_status"],
        "The session label agrees with the KRX schedule.",
    ),
    (
        "timestamps_non_decreasing",
        timestamps_non_decreasing,
        ["stock_code", "timestamp"],
        "Timestamps do not decrease within a stock.",
    ),
]:
    ROW_EXPECTATIONS[_name] = (_make(_name, _rule, _doc, skip_nulls=True), _cols)


# Labels in their sets and quantities non-negative: row rules rather than GX's column
# expectations, because each of those copies the whole batch (60-odd columns) to drop its nulls,
# twice: six of them were half the suite's time on a stock-day (bench/validation). A null fails
# them. A null key fails GX's own not-null expectation; a null elsewhere is found by the runner
# from the file's null counts (validation.runner.missing_values), outside GX, for the same reason.
KEYS = ("timestamp", "stock_code", "event_type", "price")
VALUE_SETS = {
    "event_type": EVENT_TYPES,
    "side": tuple(SIDES.values()),
    "vi_type": VI_TYPES,
    "session": SESSIONS,
}
NON_NEGATIVE = ["volume", "cum_volume"]


def labels_in_their_sets(df: pd.DataFrame) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for column, values in VALUE_SETS.items():
        ok &= df[column].isin(values)
    return ok


def quantities_non_negative(df: pd.DataFrame) -> pd.Series:
    return (df[NON_NEGATIVE] >= 0).all(axis=1)


VALUE_EXPECTATIONS: dict[str, tuple[type[MulticolumnMapExpectation], list[str]]] = {}
for _name, _rule, _cols, _doc in [
    (
        "labels_in_their_sets",
        labels_in_their_sets,
        list(VALUE_SETS),
        "; ".join(f"{c} is one of {list(v)}" for c, v in VALUE_SETS.items()) + ".",
    ),
    (
        "quantities_non_negative",
        quantities_non_negative,
        NON_NEGATIVE,
        "volume and cum_volume are not negative.",
    ),
]:
    VALUE_EXPECTATIONS[_name] = (_make(_name, _rule, _doc), _cols)


def panel_bar_consistent(df: pd.DataFrame) -> pd.Series:
    """A traded second's low <= open, close, VWAP <= high, and aggressor volumes within its volume."""
    traded = df["traded"].fillna(False).astype(bool)
    low, high = df["low"], df["high"]
    inside = pd.Series(True, index=df.index)
    for c in ("open", "close", "vwap"):
        inside &= (df[c] >= low - 1e-9) & (df[c] <= high + 1e-9)
    aggressors = df["buy_volume"] + df["sell_volume"] <= df["volume"]
    return (~traded | inside) & aggressors


def panel_offsets_consistent(df: pd.DataFrame) -> pd.Series:
    """The release comes at or after the trigger: seconds since release never exceed those since trigger."""
    return df["since_release_s"] <= df["offset_s"]


PANEL_EXPECTATIONS: dict[str, tuple[type[MulticolumnMapExpectation], list[str]]] = {}
for _name, _rule, _cols, _doc in [
    (
        "panel_bar_consistent",
        panel_bar_consistent,
        ["traded", "open", "high", "low", "close", "vwap", "volume", "buy_volume", "sell_volume"],
        "Each traded second's OHLC and VWAP agree, and buy + sell aggressor volume <= volume.",
    ),
    (
        "panel_offsets_consistent",
        panel_offsets_consistent,
        ["offset_s", "since_release_s"],
        "Offsets from the release never exceed offsets from the trigger.",
    ),
]:
    PANEL_EXPECTATIONS[_name] = (_make(_name, _rule, _doc), _cols)


def values_finite(df: pd.DataFrame) -> pd.Series:
    """No infinity in any of the columns (a missing value is not infinite)."""
    return pd.Series(~np.isinf(df.to_numpy(dtype=np.float64)).any(axis=1), index=df.index)


ExpectValuesFinite = _make("values_finite", values_finite, "No value in these columns is +/- infinity.")
