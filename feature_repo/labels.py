"""Labels of each decision (never a Feast feature): what the price did after it.

From the decision price (the last trade before the decision time, what the panel's close shows):
forward returns at 10/30/60/300 s (last trade before decision + h), whether a trade in the VI's
direction (continuation, 추세 지속) or against it (rebound, 되돌림) beat the round-trip cost
(brokerage both sides plus the sell tax), the maximum adverse excursion of a continuation trade,
the best entry second 0-9 of the event, and the VI's cause where the exchange log carries one
and its latent drift (the synthetic market's ground truth: what the models' oracle rows use).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from market import krx
from market.krx.dataset import connect, ticks_source

HORIZONS_S = (10, 30, 60, 300)
MAE_HORIZONS_S = (60, 300)

_PRICES_SQL = """
WITH trades AS (
    SELECT stock_code, timestamp, price FROM {ticks}
    WHERE event_type = 'trade' AND stock_code IN (SELECT DISTINCT stock_code FROM targets)
),
priced AS (
    SELECT g.key, g.horizon_s, t.price
    FROM targets g ASOF LEFT JOIN trades t
      ON g.stock_code = t.stock_code AND g.target_ts > t.timestamp
),
span AS (
    SELECT g.key, g.horizon_s, min(t.price) AS low, max(t.price) AS high
    FROM targets g JOIN trades t
      ON g.stock_code = t.stock_code AND t.timestamp >= g.decision_ts AND t.timestamp < g.target_ts
    WHERE g.horizon_s IN {mae}
    GROUP BY ALL
)
SELECT priced.key, priced.horizon_s, priced.price, span.low, span.high
FROM priced LEFT JOIN span USING (key, horizon_s)
"""


def _prices(ticks_root: Path, decisions: pd.DataFrame) -> pd.DataFrame:
    horizons = (0, *HORIZONS_S)
    targets = pd.DataFrame(
        {
            "key": np.repeat(np.arange(len(decisions)), len(horizons)),
            "horizon_s": np.tile(horizons, len(decisions)),
            "stock_code": np.repeat(decisions["stock_code"].to_numpy(), len(horizons)),
            "decision_ts": decisions["event_timestamp"].repeat(len(horizons)).reset_index(drop=True),
        }
    )
    targets["target_ts"] = targets["decision_ts"] + pd.to_timedelta(targets["horizon_s"], unit="s")
    con = connect()
    con.register("targets", targets)
    return con.sql(_PRICES_SQL.format(ticks=ticks_source(ticks_root), mae=tuple(MAE_HORIZONS_S))).df()


def label_rows(
    decisions: pd.DataFrame,
    prices: pd.DataFrame,
    causes: dict[str, str | None],
    brokerage_rate: float,
    latent_drift: dict[str, float] | None = None,
) -> pd.DataFrame:
    """``decisions``: event_id, decision_offset_s, stock_code, event_timestamp, direction, market,
    day, release_price; ``prices``: from :func:`_prices`. Pure."""
    wide = prices.pivot(index="key", columns="horizon_s", values="price").sort_index()
    low = prices.pivot(index="key", columns="horizon_s", values="low").sort_index()
    high = prices.pivot(index="key", columns="horizon_s", values="high").sort_index()
    d = decisions.reset_index(drop=True)
    direction = d["direction"].to_numpy(dtype=float)
    # no trade before the decision at all (impossible after an uncross, but be safe): the release price
    p0 = wide[0].fillna(pd.Series(d["release_price"].to_numpy(dtype=float))).to_numpy(dtype=float)
    cost_model = krx.CostModel(brokerage_rate)
    cost = np.array(
        [cost_model.round_trip_rate(m, day) for m, day in zip(d["market"], d["day"], strict=True)]
    )
    out = d[["event_id", "decision_offset_s", "stock_code", "event_timestamp", "day", "direction"]].copy()
    out["decision_price"] = p0
    out["round_trip_cost"] = cost
    closes = {day: krx.session_schedule(day).closing_auction_start for day in d["day"].unique()}
    session_end = pd.to_datetime(pd.Series([closes[day] for day in d["day"]]), utc=True)
    for h in HORIZONS_S:
        ret = wide[h].to_numpy(dtype=float) / p0 - 1.0
        out[f"ret_{h}s"] = ret
        out[f"continuation_net_{h}s"] = direction * ret - cost > 0
        out[f"rebound_net_{h}s"] = -direction * ret - cost > 0
        end = pd.to_datetime(d["event_timestamp"], utc=True) + pd.Timedelta(seconds=h)
        out[f"in_session_{h}s"] = (end <= session_end).to_numpy()
    for h in MAE_HORIZONS_S:
        worst = np.where(direction > 0, low[h].to_numpy(dtype=float), high[h].to_numpy(dtype=float))
        adverse = np.nan_to_num(-direction * (worst / p0 - 1.0), nan=0.0)
        out[f"mae_{h}s"] = np.maximum(adverse, 0.0)
    signed = pd.Series(direction * p0)
    out["best_entry_s"] = _best_offset(d, signed)
    out["best_entry_rebound_s"] = _best_offset(d, -signed)
    out["cause"] = d["event_id"].map(causes).astype("string")
    out["latent_drift"] = d["event_id"].map(latent_drift or {}).astype(float)
    return out


def _best_offset(d: pd.DataFrame, signed_price: pd.Series) -> np.ndarray:
    """Per event, the decision offset with the lowest ``signed_price`` (the earliest on ties)."""
    frame = pd.DataFrame({"event_id": d["event_id"], "k": d["decision_offset_s"], "p": signed_price})
    best = frame.sort_values(["event_id", "p", "k"]).groupby("event_id")["k"].first()
    return d["event_id"].map(best).to_numpy(dtype=np.int64)


def build_labels(
    ticks_root: Path,
    decisions: pd.DataFrame,
    causes: dict[str, str | None],
    brokerage_rate: float,
    latent_drift: dict[str, float] | None = None,
) -> pa.Table:
    frame = label_rows(decisions, _prices(ticks_root, decisions), causes, brokerage_rate, latent_drift)
    return pa.Table.from_pandas(frame, preserve_index=False)
