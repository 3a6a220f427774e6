"""The pre-trigger group: the ``PANEL_BEFORE_S`` seconds before the trigger second."""

from __future__ import annotations

import math

import numpy as np

from feature_repo.features import calc
from feature_repo.features.inputs import EventInfo
from feature_repo.features.spec import EOK, FRACTION, PANEL_BEFORE_S, RATIO01, SAME_DAY, feature_specs
from market import krx

PRE_TRIGGER = feature_specs(
    "pre_trigger",
    [
        *(
            (
                f"pre_ret_{w}s",
                f"trigger price over the close {w} s before the trigger second, minus 1",
                False,
                *SAME_DAY,
            )
            for w in (5, 10, 30, 60, 120)
        ),
        ("pre_velocity_10s", "slope of log close over the last 10 s (per s)"),
        ("pre_velocity_30s", "slope of log close over the last 30 s (per s)"),
        ("pre_acceleration", "pre_velocity_10s minus the slope over the 20 s before those 10 s"),
        ("pre_realized_vol_60s", "std of 1-s log returns over the last 60 s", False, 0.0),
        ("pre_realized_vol_120s", "std of 1-s log returns over the last 120 s", False, 0.0),
        ("pre_range_60s", "(high - low) over the last 60 s / trigger price", False, 0.0),
        ("pre_volume_10s_log", "log1p shares traded in the last 10 s", False, 0.0),
        ("pre_volume_60s_log", "log1p shares traded in the last 60 s", False, 0.0),
        ("pre_volume_120s_log", "log1p shares traded in the last 120 s", False, 0.0),
        ("pre_volume_burst", "volume rate of the last 10 s over that of the 110 s before", False, 0.0),
        ("pre_trade_count_10s", "trades in the last 10 s", False, 0.0),
        ("pre_trade_count_60s", "trades in the last 60 s", False, 0.0),
        ("pre_buy_ratio_10s", "buy-aggressor share of aggressor volume, last 10 s", False, *RATIO01),
        ("pre_buy_ratio_60s", "buy-aggressor share of aggressor volume, last 60 s", False, *RATIO01),
        ("pre_trade_strength_60s", "체결강도 as log((buy + 1) / (sell + 1)) over the last 60 s"),
        ("pre_trade_strength_dir", "pre_trade_strength_60s signed in the VI's direction"),
        ("pre_value_60s_log", "log1p KRW traded in the last 60 s", False, 0.0),
        ("pre_program_net_buy", "program net buy (프로그램 순매수) at the trigger, 억원", True),
        ("pre_program_net_buy_dir", "pre_program_net_buy in the VI's direction", True),
        ("pre_program_change_10s", "program net buy change over the last 10 s, 억원"),
        ("pre_program_change_60s", "program net buy change over the last 60 s, 억원"),
        ("pre_program_switch", "1 if the program flow of the last 10 s turned against the 50 s before"),
        ("pre_program_dir", "sign of the 60-s program flow in the VI's direction", False, -1.0, 1.0),
        ("pre_imbalance_l1", "book imbalance, best level, at the trigger", True, *FRACTION),
        ("pre_imbalance_l5", "book imbalance, 5 levels, at the trigger", True, *FRACTION),
        ("pre_imbalance_l10", "book imbalance, 10 levels, at the trigger", True, *FRACTION),
        ("pre_imbalance_l5_mean_10s", "mean 5-level imbalance over the last 10 s", True, *FRACTION),
        ("pre_spread_ticks", "quoted spread at the trigger, ticks", True, 0.0),
        ("pre_spread_ticks_mean_60s", "mean quoted spread over the last 60 s, ticks", True, 0.0),
        ("pre_bid_depth_l5_log", "log1p bid shares on the best 5 levels at the trigger", False, 0.0),
        ("pre_ask_depth_l5_log", "log1p ask shares on the best 5 levels at the trigger", False, 0.0),
        ("pre_news_recency_s", "seconds since the last news flag (121: none in the window)", False, 0.0),
        ("pre_disclosure_recency_s", "seconds since the last disclosure (121: none)", False, 0.0),
        ("pre_news_flag", "a news flag in the window", False, *RATIO01),
        ("pre_disclosure_flag", "a disclosure (공시) in the window", False, *RATIO01),
        ("pre_institution_change", "institution (기관) net buy change over the window, 억원, as published"),
        ("pre_foreign_change", "foreign (외국인) net buy change over the window, 억원, as published"),
        ("pre_individual_change", "individual (개인) net buy change over the window, 억원, as published"),
    ],
)


def pre_trigger_row(pre: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
    trig = float(info.trigger_price)
    close = calc.filled_close(pre, trig)
    logp = np.log(close)
    n = len(close)

    def close_back(w: int) -> float:
        return float(close[-w]) if n >= w else (float(close[0]) if n else trig)

    def window(w: int) -> dict[str, np.ndarray]:
        return calc.tail(pre, min(w, n))

    w10, w60 = window(10), window(60)
    vol = pre["volume"]
    early = vol[: max(n - 10, 0)]
    burst = (w10["volume"].sum() / 10.0) / ((early.sum() + 1.0) / max(len(early), 1))
    r1 = np.diff(logp)
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    spread = pre["spread"] / tick
    program = pre["program_net_buy"] * trig / EOK
    p10, p_before = calc.change(program[-11:]), calc.change(program[-61:-10])
    out = {f"pre_ret_{w}s": trig / close_back(w) - 1.0 for w in (5, 10, 30, 60, 120)}
    v10, v30 = calc.slope(logp[-10:]), calc.slope(logp[-30:])
    out |= {
        "pre_velocity_10s": v10,
        "pre_velocity_30s": v30,
        "pre_acceleration": v10 - calc.slope(logp[-30:-10]),
        "pre_realized_vol_60s": float(r1[-60:].std()) if len(r1) else 0.0,
        "pre_realized_vol_120s": float(r1.std()) if len(r1) else 0.0,
        "pre_range_60s": (
            (np.nanmax(w60["high"]) - np.nanmin(w60["low"])) / trig if (~np.isnan(w60["high"])).any() else 0.0
        ),
        "pre_volume_10s_log": math.log1p(w10["volume"].sum()),
        "pre_volume_60s_log": math.log1p(w60["volume"].sum()),
        "pre_volume_120s_log": math.log1p(vol.sum()),
        "pre_volume_burst": float(burst),
        "pre_trade_count_10s": float(w10["trade_count"].sum()),
        "pre_trade_count_60s": float(w60["trade_count"].sum()),
        "pre_buy_ratio_10s": calc.buy_ratio(w10["buy_volume"].sum(), w10["sell_volume"].sum()),
        "pre_buy_ratio_60s": calc.buy_ratio(w60["buy_volume"].sum(), w60["sell_volume"].sum()),
    }
    strength = calc.strength(w60["buy_volume"].sum(), w60["sell_volume"].sum())
    change60 = calc.change(program[-61:])
    out |= {
        "pre_trade_strength_60s": strength,
        "pre_trade_strength_dir": info.direction * strength,
        "pre_value_60s_log": math.log1p(float(np.nansum(w60["vwap"] * w60["volume"]))),
        "pre_program_net_buy": calc.nan_last(program),
        "pre_program_net_buy_dir": info.direction * calc.nan_last(program),
        "pre_program_change_10s": p10,
        "pre_program_change_60s": change60,
        "pre_program_switch": float(p10 * p_before < 0),
        "pre_program_dir": info.direction * calc.sign(change60),
        "pre_imbalance_l1": calc.last(pre["imbalance_l1"]),
        "pre_imbalance_l5": calc.last(pre["imbalance_l5"]),
        "pre_imbalance_l10": calc.last(pre["imbalance_l10"]),
        "pre_imbalance_l5_mean_10s": calc.nanmean(w10["imbalance_l5"]),
        "pre_spread_ticks": calc.last(spread),
        "pre_spread_ticks_mean_60s": calc.nanmean(spread[-60:]),
        "pre_bid_depth_l5_log": math.log1p(calc.last(calc.depth(pre, "bid", 5)) if n else 0.0),
        "pre_ask_depth_l5_log": math.log1p(calc.last(calc.depth(pre, "ask", 5)) if n else 0.0),
        "pre_news_recency_s": calc.recency(pre["news_flag"], PANEL_BEFORE_S),
        "pre_disclosure_recency_s": calc.recency(pre["disclosure_flag"], PANEL_BEFORE_S),
        "pre_news_flag": float(pre["news_flag"].any()),
        "pre_disclosure_flag": float(pre["disclosure_flag"].any()),
    }
    for who in ("institution", "foreign", "individual"):
        out[f"pre_{who}_change"] = calc.change(pre[f"{who}_net"]) * trig / EOK
    return out
