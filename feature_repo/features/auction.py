"""The auction group: the VI call auction (offset_s >= 0, since_release_s < 0) and its uncross."""

from __future__ import annotations

import math

import numpy as np

from feature_repo.features import calc
from feature_repo.features.inputs import EventInfo
from feature_repo.features.spec import FRACTION, RATIO01, SAME_DAY, SAME_DAY_DIR, US, feature_specs

# no program flow here: program net buy counts executions, and nothing executes in a call auction
# (the uncross print falls in release second 0, so post_program_change holds it)
AUCTION = feature_specs(
    "auction",
    [
        # a VI still running at 15:20 is released by the closing call, up to ~15 min later
        ("auc_duration_s", "seconds from trigger to release", False, 0.0, 1200.0),
        ("auc_price_vs_trigger", "auction price (단일가) over the trigger price, minus 1", False, *SAME_DAY),
        ("auc_price_dir", "auc_price_vs_trigger in the VI's direction", False, *SAME_DAY_DIR),
        ("auc_price_vs_static_ref", "auction price over the static reference, minus 1", False, *SAME_DAY),
        ("auc_volume_log", "log1p shares matched at the uncross", False, 0.0),
        ("auc_volume_vs_pre60", "log((uncross volume + 1) / (volume of the 60 s before the trigger + 1))"),
        (
            "auc_ind_first_vs_trigger",
            "first indicative price (예상체결가) over trigger, minus 1",
            True,
            *SAME_DAY,
        ),
        ("auc_ind_last_vs_trigger", "last indicative price over trigger, minus 1", True, *SAME_DAY),
        ("auc_ind_max_vs_trigger", "highest indicative price over trigger, minus 1", True, *SAME_DAY),
        ("auc_ind_min_vs_trigger", "lowest indicative price over trigger, minus 1", True, *SAME_DAY),
        ("auc_ind_slope_30s", "slope of indicative / trigger over the auction's last 30 s (per s)"),
        ("auc_ind_changes", "indicative price changes during the auction", False, 0.0),
        (
            "auc_ind_drift_dir",
            "(last - first indicative) / trigger, in the VI's direction",
            False,
            *SAME_DAY_DIR,
        ),
        ("auc_ind_volume_last_log", "log1p indicative volume (예상체결량) at the end", False, 0.0),
        ("auc_ind_volume_growth", "log((last + 1) / (first + 1)) indicative volume"),
        ("auc_last_ind_vs_auction", "auction price over the last indicative price, minus 1", True, *SAME_DAY),
        ("auc_imbalance_l1", "book imbalance, best level, at the auction's end", True, *FRACTION),
        ("auc_imbalance_l5", "book imbalance, 5 levels, at the auction's end", True, *FRACTION),
        ("auc_imbalance_l10", "book imbalance, 10 levels, at the auction's end", True, *FRACTION),
        ("auc_imbalance_l5_mean", "mean 5-level imbalance during the auction", True, *FRACTION),
        ("auc_bid_depth_l10_log", "log1p bid shares on 10 levels at the auction's end", False, 0.0),
        ("auc_ask_depth_l10_log", "log1p ask shares on 10 levels at the auction's end", False, 0.0),
        ("auc_news", "a news flag during the auction", False, *RATIO01),
        ("auc_disclosure", "a disclosure during the auction", False, *RATIO01),
    ],
)


def release_price(info: EventInfo) -> float:
    """The uncross price, or the trigger price for a VI whose release printed nothing."""
    return float(info.auction_price if info.auction_price else info.trigger_price)


def auction_row(auc: dict[str, np.ndarray], pre: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
    trig = float(info.trigger_price)
    released = release_price(info)
    ind = np.where(auc["indicative_price"] > 0, auc["indicative_price"], np.nan)  # 0: none shown
    ind_ok = ind[~np.isnan(ind)]
    ind_rel = ind / trig - 1.0
    ind_vol = auc["indicative_volume"][~np.isnan(auc["indicative_volume"])]
    first_ind, last_ind = (ind_ok[0], ind_ok[-1]) if len(ind_ok) else (math.nan, math.nan)
    pre60 = float(pre["volume"][-60:].sum())
    out = {
        "auc_duration_s": (info.release_ts - info.trigger_ts) / US,
        "auc_price_vs_trigger": released / trig - 1.0,
        "auc_price_dir": info.direction * (released / trig - 1.0),
        "auc_price_vs_static_ref": released / info.static_ref - 1.0,
        "auc_volume_log": math.log1p(info.auction_volume),
        "auc_volume_vs_pre60": math.log((info.auction_volume + 1.0) / (pre60 + 1.0)),
        "auc_ind_first_vs_trigger": calc.ratio(first_ind, trig),
        "auc_ind_last_vs_trigger": calc.ratio(last_ind, trig),
        "auc_ind_max_vs_trigger": calc.ratio(float(ind_ok.max()), trig) if len(ind_ok) else math.nan,
        "auc_ind_min_vs_trigger": calc.ratio(float(ind_ok.min()), trig) if len(ind_ok) else math.nan,
        "auc_ind_slope_30s": calc.slope(ind_rel[-30:]),
        "auc_ind_changes": float((np.diff(ind_ok) != 0).sum()),
        "auc_ind_drift_dir": info.direction * (last_ind - first_ind) / trig if len(ind_ok) else 0.0,
        "auc_ind_volume_last_log": math.log1p(ind_vol[-1]) if len(ind_vol) else 0.0,
        "auc_ind_volume_growth": math.log((ind_vol[-1] + 1.0) / (ind_vol[0] + 1.0)) if len(ind_vol) else 0.0,
        "auc_last_ind_vs_auction": calc.ratio(released, last_ind),
        "auc_imbalance_l1": calc.last(auc["imbalance_l1"]),
        "auc_imbalance_l5": calc.last(auc["imbalance_l5"]),
        "auc_imbalance_l10": calc.last(auc["imbalance_l10"]),
        "auc_imbalance_l5_mean": calc.nanmean(auc["imbalance_l5"]),
        "auc_bid_depth_l10_log": math.log1p(calc.last(calc.depth(auc, "bid", 10)) if len(ind) else 0.0),
        "auc_ask_depth_l10_log": math.log1p(calc.last(calc.depth(auc, "ask", 10)) if len(ind) else 0.0),
        "auc_news": float(auc["news_flag"].any()),
        "auc_disclosure": float(auc["disclosure_flag"].any()),
    }
    return out
