"""Labels: forward returns from the decision price, net-of-cost flags, MAE, best entry, cause."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from feature_repo.labels import HORIZONS_S, label_rows

DAY = dt.date(2024, 3, 5)


def _decisions(direction: int, prices0: list[float]) -> pd.DataFrame:
    n = len(prices0)
    start = pd.Timestamp("2024-03-05 10:00:01", tz="Asia/Seoul")
    return pd.DataFrame(
        {
            "event_id": ["e"] * n,
            "decision_offset_s": list(range(n)),
            "stock_code": ["000001"] * n,
            "event_timestamp": [start + pd.Timedelta(seconds=k) for k in range(n)],
            "direction": [direction] * n,
            "market": ["KOSDAQ"] * n,
            "day": [DAY] * n,
            "release_price": [10_000.0] * n,
        }
    )


def _prices(p0: list[float], later: dict[int, list[float]], low: dict[int, list], high: dict[int, list]):
    rows = []
    for key, price in enumerate(p0):
        rows.append({"key": key, "horizon_s": 0, "price": price, "low": np.nan, "high": np.nan})
        for h in HORIZONS_S:
            rows.append(
                {"key": key, "horizon_s": h, "price": later[h][key], "low": low.get(h, [np.nan] * 9)[key],
                 "high": high.get(h, [np.nan] * 9)[key]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_returns_flags_mae_and_best_entry_of_an_upward_vi():
    p0 = [10_000.0, 9_900.0, 10_100.0]
    later = {10: [10_100.0] * 3, 30: [10_000.0] * 3, 60: [9_700.0] * 3, 300: [10_500.0] * 3}
    low = {60: [9_600.0] * 3, 300: [9_500.0] * 3}
    high = {60: [10_200.0] * 3, 300: [10_600.0] * 3}
    out = label_rows(_decisions(1, p0), _prices(p0, later, low, high), {"e": "news"}, brokerage_rate=0.00015)
    cost = 2 * 0.00015 + 0.0018  # KOSDAQ sell tax in 2024
    assert np.allclose(out["round_trip_cost"], cost)
    assert np.allclose(out["ret_10s"], [0.01, 10_100 / 9_900 - 1, 0.0])
    # up 1% beats 0.21% of costs; flat does not; a fall of 3% is a rebound for an upward VI
    assert list(out["continuation_net_10s"]) == [True, True, False]
    assert list(out["rebound_net_60s"]) == [True, True, True]
    assert np.allclose(out["mae_60s"], [0.04, 1 - 9_600 / 9_900, 1 - 9_600 / 10_100])
    assert (out["best_entry_s"] == 1).all() and (out["best_entry_rebound_s"] == 2).all()
    assert (out["cause"] == "news").all()


def test_a_downward_vi_measures_adverse_moves_upwards():
    p0 = [10_000.0]
    later = {h: [9_800.0] for h in HORIZONS_S}
    out = label_rows(
        _decisions(-1, p0), _prices(p0, later, {60: [9_700.0]}, {60: [10_300.0]}), {}, brokerage_rate=0.00015
    )
    assert out["continuation_net_60s"].iloc[0] and not out["rebound_net_60s"].iloc[0]
    assert np.isclose(out["mae_60s"].iloc[0], 0.03) and out["mae_300s"].iloc[0] == 0.0
    assert out["cause"].isna().all()


def test_label_table_matches_the_decisions_and_the_panel_close(built):
    labels = pq.read_table(built.labels / "labels.parquet").to_pandas()
    decisions = pq.read_table(built.features / "vi_decision_features.parquet").to_pandas()
    assert len(labels) == len(decisions)
    keys = ["event_id", "decision_offset_s"]
    merged = labels.merge(decisions[[*keys, "event_timestamp"]], on=keys, suffixes=("", "_f"))
    assert (merged["event_timestamp"] == merged["event_timestamp_f"]).all()
    assert labels["decision_price"].gt(0).all() and labels["mae_300s"].ge(labels["mae_60s"] - 1e-12).all()
    assert labels["best_entry_s"].between(0, 9).all()
    # the synthetic market's ground truth reaches every label of a matched VI
    assert labels["cause"].notna().all() and set(labels["cause"]) <= {
        "news",
        "disclosure",
        "program",
        "panic",
        "none",
    }
    # labels never reach a model's inputs: no feature view serves a label column, every feature
    # service serves only the views' features, and no source reads the label table
    from feast import FeatureService, FeatureView

    from feature_repo.definitions import feast_objects

    objects = feast_objects(built.features).values()
    served = {f.name for o in objects if isinstance(o, FeatureView) for f in o.features}
    label_columns = set(labels.columns) - {"event_id", "decision_offset_s", "event_timestamp", "stock_code"}
    assert len(served) > 100 and label_columns and not served & label_columns
    for service in (o for o in objects if isinstance(o, FeatureService)):
        names = {f.name for projection in service.feature_view_projections for f in projection.features}
        assert names and names <= served and not names & label_columns, service.name
    sources = [o.batch_source for o in objects if isinstance(o, FeatureView) and o.batch_source is not None]
    assert sources and all("labels" not in str(getattr(s, "path", "")) for s in sources)
