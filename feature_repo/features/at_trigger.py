"""The at-trigger group: the event as the detector saw it at the trigger, and the VIs before it."""

from __future__ import annotations

import math

from feature_repo.features.inputs import EventInfo
from feature_repo.features.spec import RATIO01, SAME_DAY, US, VS_BASE, feature_specs
from market import krx

AT_TRIGGER = feature_specs(
    "at_trigger",
    [
        ("trig_static", "the VI is static (정적 VI)", False, *RATIO01),
        ("trig_dynamic", "the VI is dynamic (동적 VI)", False, *RATIO01),
        ("trig_both", "static and dynamic at once (all three 0: the type is unknown)", False, *RATIO01),
        ("trig_direction", "+1 up, -1 down", False, -1.0, 1.0),
        ("trig_dev_static", "trigger price over the static reference, minus 1", False, *SAME_DAY),
        ("trig_dev_dynamic", "trigger price over the dynamic reference, minus 1", False, *SAME_DAY),
        ("trig_dev_base", "trigger price over the day's base price (기준가), minus 1", False, *VS_BASE),
        ("trig_dist_upper", "upper limit (상한가) over the trigger price, minus 1", False, 0.0),
        ("trig_dist_lower", "1 minus lower limit (하한가) over the trigger price", False, 0.0),
        ("trig_dist_limit_dir", "distance to the limit in the VI's direction", False, 0.0),
        ("trig_minutes_since_open", "minutes since the continuous session opened", False, -90.0, 420.0),
        ("trig_minutes_to_close", "minutes to the closing call auction", False, -15.0, 420.0),
        ("trig_closing_auction", "triggered in the closing call", False, *RATIO01),
        ("trig_vis_today", "earlier VIs in this stock today", False, 0.0),
        (
            "trig_since_last_release_s",
            "seconds since this stock's last VI release today (23400: none)",
            False,
            0,
        ),
        ("trig_market_vis_10m", "VIs triggered in any stock in the 10 minutes before", False, 0.0),
        ("trig_tick_bp", "tick size at the trigger price, basis points", False, 0.0, 1000.0),
        ("trig_price_log", "log of the trigger price", False, 0.0),
        ("trig_static_ref_vs_base", "static reference over the base price, minus 1", False, *VS_BASE),
    ],
)


def at_trigger_row(info: EventInfo) -> dict[str, float]:
    trig = float(info.trigger_price)
    lower, upper = krx.price_limits(info.base_price, info.market, info.day)
    schedule = krx.session_schedule(info.day)
    trigger_s = info.trigger_ts / US
    opened = krx.epoch_us(schedule.continuous_start) / US
    closing = krx.epoch_us(schedule.closing_auction_start) / US
    dist_upper, dist_lower = upper / trig - 1.0, 1.0 - lower / trig
    since_release = (
        (info.trigger_ts - info.last_release_ts) / US if info.last_release_ts is not None else 23_400.0
    )
    return {
        "trig_static": float(info.vi_type == "static"),
        "trig_dynamic": float(info.vi_type == "dynamic"),
        "trig_both": float(info.vi_type == "both"),
        "trig_direction": float(info.direction),
        "trig_dev_static": trig / info.static_ref - 1.0,
        "trig_dev_dynamic": trig / info.dynamic_ref - 1.0,
        "trig_dev_base": trig / info.base_price - 1.0,
        "trig_dist_upper": max(dist_upper, 0.0),
        "trig_dist_lower": max(dist_lower, 0.0),
        "trig_dist_limit_dir": max(dist_upper if info.direction > 0 else dist_lower, 0.0),
        "trig_minutes_since_open": (trigger_s - opened) / 60.0,
        "trig_minutes_to_close": (closing - trigger_s) / 60.0,
        "trig_closing_auction": float(trigger_s >= closing),
        "trig_vis_today": float(info.vis_today),
        "trig_since_last_release_s": since_release,
        "trig_market_vis_10m": float(info.market_vis_10m),
        "trig_tick_bp": krx.tick_size(info.trigger_price, info.market, info.day) / trig * 1e4,
        "trig_price_log": math.log(trig),
        "trig_static_ref_vs_base": info.static_ref / info.base_price - 1.0,
    }
