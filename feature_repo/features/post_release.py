"""The post-release group: seconds 0..k after the release, one row per decision."""

from __future__ import annotations

import math

import numpy as np

from feature_repo.features import calc
from feature_repo.features.auction import release_price
from feature_repo.features.inputs import EventInfo
from feature_repo.features.spec import (
    EOK,
    FRACTION,
    MAX_DECISION_OFFSET,
    RATIO01,
    SAME_DAY,
    SAME_DAY_DIR,
    SAME_DAY_UP,
    feature_specs,
)
from market import krx

POST_RELEASE = feature_specs(
    "post_release",
    [
        ("post_offset_s", "decision seconds after the release", False, 0.0, float(MAX_DECISION_OFFSET)),
        ("post_ret", "close over the release price, minus 1", False, *SAME_DAY),
        ("post_ret_dir", "post_ret in the VI's direction", False, *SAME_DAY_DIR),
        ("post_ret_1s", "close over the close 1 s before, minus 1", False, *SAME_DAY),
        ("post_ret_3s", "close over the close 3 s before, minus 1", False, *SAME_DAY),
        (
            "post_high_vs_release",
            "highest trade since the release over the release price, minus 1",
            False,
            *SAME_DAY_UP,
        ),
        (
            "post_low_vs_release",
            "lowest trade since the release over the release price, minus 1",
            False,
            SAME_DAY[0],
            0.0,
        ),
        ("post_mfe_dir", "best excursion so far in the VI's direction", False, *SAME_DAY_UP),
        ("post_mae_dir", "worst excursion so far against the VI's direction", False, *SAME_DAY_UP),
        ("post_vwap_vs_release", "VWAP since the release over the release price, minus 1", False, *SAME_DAY),
        ("post_volume_log", "log1p shares traded since the release", False, 0.0),
        (
            "post_volume_rate_vs_pre",
            "log1p volume rate since the release minus log1p that of the 60 s before the trigger",
        ),
        ("post_volume_vs_auction", "shares since the release over the uncross volume", False, 0.0),
        ("post_volume_trend", "volume rate of the last 3 s over the rate since the release", False, 0.0),
        ("post_trade_count", "trades since the release", False, 0.0),
        ("post_trade_rate", "trades per second since the release", False, 0.0),
        ("post_buy_ratio", "buy-aggressor share of aggressor volume since the release", False, *RATIO01),
        ("post_trade_strength", "체결강도 as log((buy + 1) / (sell + 1)) since the release"),
        ("post_trade_strength_dir", "post_trade_strength in the VI's direction"),
        ("post_program_change", "program net buy change since the release, 억원"),
        ("post_program_change_dir", "post_program_change in the VI's direction"),
        ("post_program_rate", "program net buy change per second since the release, 억원"),
        ("post_imbalance_l1", "book imbalance, best level, now", True, *FRACTION),
        ("post_imbalance_l5", "book imbalance, 5 levels, now", True, *FRACTION),
        ("post_imbalance_l10", "book imbalance, 10 levels, now", True, *FRACTION),
        ("post_imbalance_l5_change", "5-level imbalance now minus at the auction's end", True, -2.0, 2.0),
        ("post_spread_ticks", "quoted spread now, ticks", True, 0.0),
        ("post_spread_vs_pre", "spread now over the mean spread before the trigger", True, 0.0),
        (
            "post_bid_depth_recovery",
            "bid shares (10 levels) now over their mean before the trigger",
            True,
            0.0,
        ),
        (
            "post_ask_depth_recovery",
            "ask shares (10 levels) now over their mean before the trigger",
            True,
            0.0,
        ),
        ("post_last_trade_age_s", "seconds since the last trade", False, 0.0),
        ("post_institution_change", "institution net buy change since the trigger, 억원, as published"),
        ("post_foreign_change", "foreign net buy change since the trigger, 억원, as published"),
        ("post_individual_change", "individual net buy change since the trigger, 억원, as published"),
        ("post_news", "a news flag since the release", False, *RATIO01),
    ],
)


def post_release_row(
    post: dict[str, np.ndarray],
    auc: dict[str, np.ndarray],
    pre: dict[str, np.ndarray],
    info: EventInfo,
    k: int,
) -> dict[str, float]:
    trig = float(info.trigger_price)
    released = release_price(info)
    close = calc.filled_close(post, released)
    n = len(close)  # k + 1 seconds
    traded = ~np.isnan(post["high"])
    high = float(np.nanmax(post["high"])) if traded.any() else released
    low = float(np.nanmin(post["low"])) if traded.any() else released
    up, down = max(high / released - 1.0, 0.0), max(1.0 - low / released, 0.0)
    volume = float(post["volume"].sum())
    buy, sell = float(post["buy_volume"].sum()), float(post["sell_volume"].sum())
    value = float(np.nansum(post["vwap"] * post["volume"]))
    pre60_rate = float(pre["volume"][-60:].sum()) / 60.0
    rate = volume / n
    recent = float(post["volume"][-3:].sum()) / min(3, n)
    program = post["program_net_buy"] * trig / EOK
    program_before = calc.nan_last(auc["program_net_buy"] * trig / EOK)
    program_now = calc.nan_last(program)
    change = (
        program_now - program_before if not (math.isnan(program_now) or math.isnan(program_before)) else 0.0
    )
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    pre_spread = calc.nanmean(pre["spread"][-60:] / tick)
    spread = calc.last(post["spread"]) / tick
    trades_at = np.flatnonzero(traded)
    ret = close[-1] / released - 1.0
    strength = calc.strength(buy, sell)
    out = {
        "post_offset_s": float(k),
        "post_ret": ret,
        "post_ret_dir": info.direction * ret,
        "post_ret_1s": close[-1] / (close[-2] if n >= 2 else released) - 1.0,
        "post_ret_3s": close[-1] / (close[-4] if n >= 4 else released) - 1.0,
        "post_high_vs_release": up,
        "post_low_vs_release": -down,
        "post_mfe_dir": up if info.direction > 0 else down,
        "post_mae_dir": down if info.direction > 0 else up,
        "post_vwap_vs_release": (value / volume) / released - 1.0 if volume > 0 else 0.0,
        "post_volume_log": math.log1p(volume),
        "post_volume_rate_vs_pre": math.log1p(rate) - math.log1p(pre60_rate),
        "post_volume_vs_auction": volume / (info.auction_volume + 1.0),
        "post_volume_trend": recent / rate if rate > 0 else 0.0,
        "post_trade_count": float(post["trade_count"].sum()),
        "post_trade_rate": float(post["trade_count"].sum()) / n,
        "post_buy_ratio": calc.buy_ratio(buy, sell),
        "post_trade_strength": strength,
        "post_trade_strength_dir": info.direction * strength,
        "post_program_change": change,
        "post_program_change_dir": info.direction * change,
        "post_program_rate": change / n,
        "post_imbalance_l1": calc.last(post["imbalance_l1"]),
        "post_imbalance_l5": calc.last(post["imbalance_l5"]),
        "post_imbalance_l10": calc.last(post["imbalance_l10"]),
        "post_imbalance_l5_change": calc.last(post["imbalance_l5"]) - calc.last(auc["imbalance_l5"]),
        "post_spread_ticks": spread,
        "post_spread_vs_pre": spread / pre_spread if pre_spread > 0 else math.nan,
        "post_bid_depth_recovery": _recovery(post, pre, "bid"),
        "post_ask_depth_recovery": _recovery(post, pre, "ask"),
        "post_last_trade_age_s": float(n - 1 - trades_at[-1]) if len(trades_at) else float(n),
        "post_news": float(post["news_flag"].any()),
    }
    for who in ("institution", "foreign", "individual"):
        published = np.concatenate([auc[f"{who}_net"], post[f"{who}_net"]])
        out[f"post_{who}_change"] = calc.change(published) * trig / EOK
    return out


def _recovery(post: dict[str, np.ndarray], pre: dict[str, np.ndarray], side: str) -> float:
    before = calc.nanmean(calc.depth(pre, side, 10)) if len(pre["offset_s"]) else math.nan
    return calc.last(calc.depth(post, side, 10)) / before if before > 0 else math.nan
