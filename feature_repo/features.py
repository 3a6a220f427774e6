"""The VI features: pure functions over one event's 1-second panel up to a decision time.

One code path: the batch builder (``feature_repo.build``) and the live path (``feature_repo.live``)
both build the panel with ``market.events.panels`` and call :func:`event_row`, :func:`decision_row` and
:func:`sequence_row` here.

Decisions. A model decides at the release of a VI and at each second after it, up to 9 s (VI 해제
후 몇 초). Decision ``k`` is taken at the end of panel second ``since_release_s == k`` (the
release's own second is 0), so it sees every tick stamped before
``decision_time(release, k) = floor_to_second(release) + (k + 1) s`` and none after.

Groups and where they look (rows of the panel):
- ``pre_trigger``: the ``PANEL_BEFORE_S`` seconds before the trigger second (offset_s < 0);
- ``at_trigger``: the event as the detector saw it at the trigger, and the VIs before it;
- ``auction``: the VI call auction (offset_s >= 0, since_release_s < 0) and its uncross;
- ``post_release``: seconds 0..k after the release;
- ``stock_context``: the stock as of the previous close (``feature_repo.context``).
The first three are known at the release (one row per event, stamped at the release); the
post-release group and the sequence view are one row per decision.

Units: returns and distances are fractions; flows (program 프로그램 순매수, investor 투자자별 순매수)
are in 억원 (1e8 KRW) at the trigger price; spreads are in ticks; ``*_log`` is log1p.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from market import krx

PANEL_BEFORE_S = 120  # the pre-trigger look-back of every panel the features read
MAX_DECISION_OFFSET = 9  # decisions at 0..9 s after the release
DECISION_OFFSETS = tuple(range(MAX_DECISION_OFFSET + 1))
SEQUENCE_LENGTH = 240  # seconds ending at the decision: ~60 s before the trigger, the auction, after
MARKET_VI_WINDOW_S = 600
EOK = 1e8  # 억원
US = 1_000_000


# What a feature reads beyond trades, books and program flow, by the words of its name: investor
# nets (KIS publishes them by REST only, not in the real-time feed) and news or disclosure flags
# (no broker feed carries them). Vendor files have them only where the layout maps the column.
_INPUT_WORDS = {
    "institution": "investor nets",
    "foreign": "investor nets",
    "individual": "investor nets",
    "news": "news flags",
    "disclosure": "disclosure flags",
}
LIVE_FEED_LACKS = frozenset(_INPUT_WORDS.values())  # the KIS real-time feed


@dataclass(frozen=True)
class Feature:
    name: str
    group: str
    doc: str
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None

    @property
    def needs(self) -> frozenset[str]:
        """The inputs it reads that not every source supplies (see :data:`LIVE_FEED_LACKS`)."""
        return frozenset(what for word, what in _INPUT_WORDS.items() if word in self.name)

    @property
    def live(self) -> bool:
        """Whether the live KIS feed supplies what it reads."""
        return not self.needs & LIVE_FEED_LACKS


def feature_specs(group: str, rows: list[tuple]) -> list[Feature]:
    return [Feature(name, group, doc, *rest) for name, doc, *rest in rows]


FRACTION = (-1.0, 1.0)
RATIO01 = (0.0, 1.0)

PRE_TRIGGER = feature_specs(
    "pre_trigger",
    [
        *(
            (f"pre_ret_{w}s", f"trigger price over the close {w} s before the trigger second, minus 1")
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

AT_TRIGGER = feature_specs(
    "at_trigger",
    [
        ("trig_static", "the VI is static (정적 VI)", False, *RATIO01),
        ("trig_dynamic", "the VI is dynamic (동적 VI)", False, *RATIO01),
        ("trig_both", "static and dynamic at once (all three 0: the type is unknown)", False, *RATIO01),
        ("trig_direction", "+1 up, -1 down", False, -1.0, 1.0),
        ("trig_dev_static", "trigger price over the static reference, minus 1", False, -0.5, 0.5),
        ("trig_dev_dynamic", "trigger price over the dynamic reference, minus 1", False, -0.5, 0.5),
        ("trig_dev_base", "trigger price over the day's base price (기준가), minus 1", False, -0.35, 0.35),
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
        ("trig_static_ref_vs_base", "static reference over the base price, minus 1", False, -0.35, 0.35),
    ],
)

# no program flow here: program net buy counts executions, and nothing executes in a call auction
# (the uncross print falls in release second 0, so post_program_change holds it)
AUCTION = feature_specs(
    "auction",
    [
        # a VI still running at 15:20 is released by the closing call, up to ~15 min later
        ("auc_duration_s", "seconds from trigger to release", False, 0.0, 1200.0),
        ("auc_price_vs_trigger", "auction price (단일가) over the trigger price, minus 1", False, -0.3, 0.3),
        ("auc_price_dir", "auc_price_vs_trigger in the VI's direction", False, -0.3, 0.3),
        ("auc_price_vs_static_ref", "auction price over the static reference, minus 1", False, -0.5, 0.5),
        ("auc_volume_log", "log1p shares matched at the uncross", False, 0.0),
        ("auc_volume_vs_pre60", "log((uncross volume + 1) / (volume of the 60 s before the trigger + 1))"),
        (
            "auc_ind_first_vs_trigger",
            "first indicative price (예상체결가) over trigger, minus 1",
            True,
            *FRACTION,
        ),
        ("auc_ind_last_vs_trigger", "last indicative price over trigger, minus 1", True, *FRACTION),
        ("auc_ind_max_vs_trigger", "highest indicative price over trigger, minus 1", True, *FRACTION),
        ("auc_ind_min_vs_trigger", "lowest indicative price over trigger, minus 1", True, *FRACTION),
        ("auc_ind_slope_30s", "slope of indicative / trigger over the auction's last 30 s (per s)"),
        ("auc_ind_changes", "indicative price changes during the auction", False, 0.0),
        ("auc_ind_drift_dir", "(last - first indicative) / trigger, in the VI's direction", False, *FRACTION),
        ("auc_ind_volume_last_log", "log1p indicative volume (예상체결량) at the end", False, 0.0),
        ("auc_ind_volume_growth", "log((last + 1) / (first + 1)) indicative volume"),
        ("auc_last_ind_vs_auction", "auction price over the last indicative price, minus 1", True, *FRACTION),
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

POST_RELEASE = feature_specs(
    "post_release",
    [
        ("post_offset_s", "decision seconds after the release", False, 0.0, float(MAX_DECISION_OFFSET)),
        ("post_ret", "close over the release price, minus 1", False, *FRACTION),
        ("post_ret_dir", "post_ret in the VI's direction", False, *FRACTION),
        ("post_ret_1s", "close over the close 1 s before, minus 1", False, *FRACTION),
        ("post_ret_3s", "close over the close 3 s before, minus 1", False, *FRACTION),
        (
            "post_high_vs_release",
            "highest trade since the release over the release price, minus 1",
            False,
            0.0,
            1.0,
        ),
        (
            "post_low_vs_release",
            "lowest trade since the release over the release price, minus 1",
            False,
            -1.0,
            0.0,
        ),
        ("post_mfe_dir", "best excursion so far in the VI's direction", False, 0.0, 1.0),
        ("post_mae_dir", "worst excursion so far against the VI's direction", False, 0.0, 1.0),
        ("post_vwap_vs_release", "VWAP since the release over the release price, minus 1", False, *FRACTION),
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

SEQUENCE_CHANNELS = {
    "seq_ret": "log(close / trigger price)",
    "seq_volume": "log1p shares traded",
    "seq_flow": "(buy - sell) / (buy + sell + 1) aggressor volume",
    "seq_imbalance_l5": "5-level book imbalance (0 when no book)",
    "seq_spread_ticks": "quoted spread in ticks (0 when not quoted)",
    "seq_indicative": "log(indicative price / trigger price) during the auction, else 0",
    "seq_program": "program net buy change, 억원",
    "seq_phase": "0 before the trigger, 1 auction, 2 release second, 3 after",
    "seq_mask": "1 for a panel second, 0 for left padding",
}

EVENT_FEATURES = PRE_TRIGGER + AT_TRIGGER + AUCTION
DECISION_FEATURES = POST_RELEASE


@dataclass(frozen=True)
class EventInfo:
    """What is known of a VI at its release, besides its panel."""

    event_id: str
    stock_code: str
    day: dt.date
    market: str
    kospi200: bool
    base_price: int
    trigger_ts: int  # µs since the epoch
    release_ts: int
    vi_type: str
    direction: int
    static_ref: int
    dynamic_ref: int
    trigger_price: int
    auction_price: int | None
    auction_volume: int
    vis_today: int  # earlier VIs in this stock today
    last_release_ts: int | None  # this stock's previous VI release today
    market_vis_10m: int  # VIs in any stock triggered in the 10 minutes before


class VIHistory:
    """The VIs seen so far, answering what an event may know of the VIs before it: batch adds the
    events table's rows, live adds its detector's VIs at their trigger (and their release when it
    comes) and other stocks' VIs as the exchange's VI-status notices bring them."""

    def __init__(self) -> None:
        self._by_stock_day: dict[tuple[str, dt.date], dict[int, int | None]] = defaultdict(dict)
        self._triggers: list[int] = []  # every stock's, sorted

    def add(self, stock_code: str, day: dt.date, trigger_ts: int, release_ts: int | None = None) -> None:
        known = self._by_stock_day[(stock_code, day)]
        if trigger_ts not in known:
            bisect.insort(self._triggers, trigger_ts)
        known[trigger_ts] = release_ts if release_ts is not None else known.get(trigger_ts)

    def info(self, ev: dict, stock_day: object) -> EventInfo:
        """``ev``: an events.parquet row with µs ints; ``stock_day``: ``market.events.detector.StockDay``."""
        trigger = ev["trigger_ts"]
        earlier = {
            t: r for t, r in self._by_stock_day[(ev["stock_code"], stock_day.day)].items() if t < trigger
        }
        released = [r for r in earlier.values() if r is not None and r <= trigger]
        lo = bisect.bisect_left(self._triggers, trigger - MARKET_VI_WINDOW_S * US)
        hi = bisect.bisect_left(self._triggers, trigger)
        return EventInfo(
            event_id=ev["event_id"],
            stock_code=ev["stock_code"],
            day=stock_day.day,
            market=stock_day.market,
            kospi200=stock_day.kospi200,
            base_price=stock_day.base_price,
            trigger_ts=trigger,
            release_ts=ev["release_ts"],
            vi_type=ev["vi_type"],
            direction=int(ev["direction"]),
            static_ref=ev["static_ref"],
            dynamic_ref=ev["dynamic_ref"],
            trigger_price=ev["trigger_price"],
            auction_price=ev["auction_price"],
            auction_volume=ev["auction_volume"],
            vis_today=len(earlier),
            last_release_ts=max(released) if released else None,
            market_vis_10m=hi - lo,
        )


def decision_time_us(release_ts: int, offset_s: int) -> int:
    """End of the ``offset_s``-th second after the release (µs since the epoch)."""
    return (release_ts // US) * US + (offset_s + 1) * US


# ---------------------------------------------------------------- panel arrays

_PANEL_NUMERIC = [
    "offset_s", "since_release_s", "high", "low", "close", "vwap", "volume", "buy_volume",
    "sell_volume", "trade_count", "program_net_buy", "institution_net", "foreign_net", "individual_net",
    "news_flag", "disclosure_flag", "vi_status", "indicative_price", "indicative_volume", "spread",
    "imbalance_l1", "imbalance_l5", "imbalance_l10", "program_net_buy_change",
    *(f"{side}_volume_{i}" for side in ("bid", "ask") for i in range(1, 11)),
]  # fmt: skip
PANEL_INPUTS = ["event_id", *_PANEL_NUMERIC]


def panel_arrays(panels: pa.Table) -> dict[str, dict[str, np.ndarray]]:
    """Per event, the panel columns the features read, as float arrays (null -> NaN), in second order."""
    t = panels.select(PANEL_INPUTS)
    ids = t["event_id"].to_numpy(zero_copy_only=False)
    cols = {c: t[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in _PANEL_NUMERIC}
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(ids)]
    return {ids[a]: {c: v[a:b] for c, v in cols.items()} for a, b in zip(starts, ends, strict=True)}


def _rows(panel: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {c: v[mask] for c, v in panel.items()}


# ---------------------------------------------------------------- small pure math


def _last(x: np.ndarray) -> float:
    return float(x[-1]) if len(x) else math.nan


def _nan_last(x: np.ndarray) -> float:
    ok = x[~np.isnan(x)]
    return float(ok[-1]) if len(ok) else math.nan


def _ratio(a: float, b: float) -> float:
    """a / b - 1, NaN when either is missing or b is not positive."""
    return a / b - 1.0 if b > 0 and not math.isnan(a) and not math.isnan(b) else math.nan


def _slope(y: np.ndarray) -> float:
    """Least-squares slope per step over the non-NaN points (0 with fewer than 2)."""
    x = np.arange(len(y), dtype=np.float64)
    ok = ~np.isnan(y)
    if ok.sum() < 2:
        return 0.0
    x, y = x[ok], y[ok]
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def _nanmean(x: np.ndarray) -> float:
    ok = x[~np.isnan(x)]
    return float(ok.mean()) if len(ok) else math.nan


def _filled_close(rows: dict[str, np.ndarray], fallback: float) -> np.ndarray:
    """The carried close, with the seconds before the window's first trade taken as that trade
    (or ``fallback`` when the rows have none)."""
    close = rows["close"]
    ok = np.flatnonzero(~np.isnan(close))
    if not len(ok):
        return np.full(len(close), fallback)
    out = close.copy()
    out[: ok[0]] = close[ok[0]]
    return out


def _buy_ratio(buy: float, sell: float) -> float:
    return buy / (buy + sell) if buy + sell > 0 else 0.5


def _strength(buy: float, sell: float) -> float:
    """체결강도 (buy over sell aggressor volume) on a log scale, finite when either side is 0."""
    return math.log((buy + 1.0) / (sell + 1.0))


def _change(x: np.ndarray) -> float:
    """Last minus first published value in the rows (0 when nothing was published)."""
    ok = x[~np.isnan(x)]
    return float(ok[-1] - ok[0]) if len(ok) else 0.0


def _recency(flags: np.ndarray, window: int) -> float:
    hits = np.flatnonzero(flags > 0)
    return float(len(flags) - hits[-1]) if len(hits) else float(window + 1)


def _depth(rows: dict[str, np.ndarray], side: str, levels: int) -> np.ndarray:
    return np.nansum([rows[f"{side}_volume_{i}"] for i in range(1, levels + 1)], axis=0)


def _sign(x: float) -> float:
    return float(np.sign(x)) if not math.isnan(x) else 0.0


def _tail(rows: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {c: v[-n:] if n else v[:0] for c, v in rows.items()}


# ---------------------------------------------------------------- the groups


def _pre_trigger(pre: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
    trig = float(info.trigger_price)
    close = _filled_close(pre, trig)
    logp = np.log(close)
    n = len(close)

    def close_back(w: int) -> float:
        return float(close[-w]) if n >= w else (float(close[0]) if n else trig)

    def window(w: int) -> dict[str, np.ndarray]:
        return _tail(pre, min(w, n))

    w10, w60 = window(10), window(60)
    vol = pre["volume"]
    early = vol[: max(n - 10, 0)]
    burst = (w10["volume"].sum() / 10.0) / ((early.sum() + 1.0) / max(len(early), 1))
    r1 = np.diff(logp)
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    spread = pre["spread"] / tick
    program = pre["program_net_buy"] * trig / EOK
    p10, p_before = _change(program[-11:]), _change(program[-61:-10])
    out = {f"pre_ret_{w}s": trig / close_back(w) - 1.0 for w in (5, 10, 30, 60, 120)}
    v10, v30 = _slope(logp[-10:]), _slope(logp[-30:])
    out |= {
        "pre_velocity_10s": v10,
        "pre_velocity_30s": v30,
        "pre_acceleration": v10 - _slope(logp[-30:-10]),
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
        "pre_buy_ratio_10s": _buy_ratio(w10["buy_volume"].sum(), w10["sell_volume"].sum()),
        "pre_buy_ratio_60s": _buy_ratio(w60["buy_volume"].sum(), w60["sell_volume"].sum()),
    }
    strength = _strength(w60["buy_volume"].sum(), w60["sell_volume"].sum())
    change60 = _change(program[-61:])
    out |= {
        "pre_trade_strength_60s": strength,
        "pre_trade_strength_dir": info.direction * strength,
        "pre_value_60s_log": math.log1p(float(np.nansum(w60["vwap"] * w60["volume"]))),
        "pre_program_net_buy": _nan_last(program),
        "pre_program_net_buy_dir": info.direction * _nan_last(program),
        "pre_program_change_10s": p10,
        "pre_program_change_60s": change60,
        "pre_program_switch": float(p10 * p_before < 0),
        "pre_program_dir": info.direction * _sign(change60),
        "pre_imbalance_l1": _last(pre["imbalance_l1"]),
        "pre_imbalance_l5": _last(pre["imbalance_l5"]),
        "pre_imbalance_l10": _last(pre["imbalance_l10"]),
        "pre_imbalance_l5_mean_10s": _nanmean(w10["imbalance_l5"]),
        "pre_spread_ticks": _last(spread),
        "pre_spread_ticks_mean_60s": _nanmean(spread[-60:]),
        "pre_bid_depth_l5_log": math.log1p(_last(_depth(pre, "bid", 5)) if n else 0.0),
        "pre_ask_depth_l5_log": math.log1p(_last(_depth(pre, "ask", 5)) if n else 0.0),
        "pre_news_recency_s": _recency(pre["news_flag"], PANEL_BEFORE_S),
        "pre_disclosure_recency_s": _recency(pre["disclosure_flag"], PANEL_BEFORE_S),
        "pre_news_flag": float(pre["news_flag"].any()),
        "pre_disclosure_flag": float(pre["disclosure_flag"].any()),
    }
    for who in ("institution", "foreign", "individual"):
        out[f"pre_{who}_change"] = _change(pre[f"{who}_net"]) * trig / EOK
    return out


def _at_trigger(info: EventInfo) -> dict[str, float]:
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


def release_price(info: EventInfo) -> float:
    """The uncross price, or the trigger price for a VI whose release printed nothing."""
    return float(info.auction_price if info.auction_price else info.trigger_price)


def _auction(auc: dict[str, np.ndarray], pre: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
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
        "auc_ind_first_vs_trigger": _ratio(first_ind, trig),
        "auc_ind_last_vs_trigger": _ratio(last_ind, trig),
        "auc_ind_max_vs_trigger": _ratio(float(ind_ok.max()), trig) if len(ind_ok) else math.nan,
        "auc_ind_min_vs_trigger": _ratio(float(ind_ok.min()), trig) if len(ind_ok) else math.nan,
        "auc_ind_slope_30s": _slope(ind_rel[-30:]),
        "auc_ind_changes": float((np.diff(ind_ok) != 0).sum()),
        "auc_ind_drift_dir": info.direction * (last_ind - first_ind) / trig if len(ind_ok) else 0.0,
        "auc_ind_volume_last_log": math.log1p(ind_vol[-1]) if len(ind_vol) else 0.0,
        "auc_ind_volume_growth": math.log((ind_vol[-1] + 1.0) / (ind_vol[0] + 1.0)) if len(ind_vol) else 0.0,
        "auc_last_ind_vs_auction": _ratio(released, last_ind),
        "auc_imbalance_l1": _last(auc["imbalance_l1"]),
        "auc_imbalance_l5": _last(auc["imbalance_l5"]),
        "auc_imbalance_l10": _last(auc["imbalance_l10"]),
        "auc_imbalance_l5_mean": _nanmean(auc["imbalance_l5"]),
        "auc_bid_depth_l10_log": math.log1p(_last(_depth(auc, "bid", 10)) if len(ind) else 0.0),
        "auc_ask_depth_l10_log": math.log1p(_last(_depth(auc, "ask", 10)) if len(ind) else 0.0),
        "auc_news": float(auc["news_flag"].any()),
        "auc_disclosure": float(auc["disclosure_flag"].any()),
    }
    return out


def _post_release(
    post: dict[str, np.ndarray],
    auc: dict[str, np.ndarray],
    pre: dict[str, np.ndarray],
    info: EventInfo,
    k: int,
) -> dict[str, float]:
    trig = float(info.trigger_price)
    released = release_price(info)
    close = _filled_close(post, released)
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
    program_before = _nan_last(auc["program_net_buy"] * trig / EOK)
    program_now = _nan_last(program)
    change = (
        program_now - program_before if not (math.isnan(program_now) or math.isnan(program_before)) else 0.0
    )
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    pre_spread = _nanmean(pre["spread"][-60:] / tick)
    spread = _last(post["spread"]) / tick
    trades_at = np.flatnonzero(traded)
    ret = close[-1] / released - 1.0
    strength = _strength(buy, sell)
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
        "post_buy_ratio": _buy_ratio(buy, sell),
        "post_trade_strength": strength,
        "post_trade_strength_dir": info.direction * strength,
        "post_program_change": change,
        "post_program_change_dir": info.direction * change,
        "post_program_rate": change / n,
        "post_imbalance_l1": _last(post["imbalance_l1"]),
        "post_imbalance_l5": _last(post["imbalance_l5"]),
        "post_imbalance_l10": _last(post["imbalance_l10"]),
        "post_imbalance_l5_change": _last(post["imbalance_l5"]) - _last(auc["imbalance_l5"]),
        "post_spread_ticks": spread,
        "post_spread_vs_pre": spread / pre_spread if pre_spread > 0 else math.nan,
        "post_bid_depth_recovery": _recovery(post, pre, "bid"),
        "post_ask_depth_recovery": _recovery(post, pre, "ask"),
        "post_last_trade_age_s": float(n - 1 - trades_at[-1]) if len(trades_at) else float(n),
        "post_news": float(post["news_flag"].any()),
    }
    for who in ("institution", "foreign", "individual"):
        published = np.concatenate([auc[f"{who}_net"], post[f"{who}_net"]])
        out[f"post_{who}_change"] = _change(published) * trig / EOK
    return out


def _recovery(post: dict[str, np.ndarray], pre: dict[str, np.ndarray], side: str) -> float:
    before = _nanmean(_depth(pre, side, 10)) if len(pre["offset_s"]) else math.nan
    return _last(_depth(post, side, 10)) / before if before > 0 else math.nan


def _split(panel: dict[str, np.ndarray], k: int) -> tuple[dict, dict, dict]:
    """(pre-trigger, auction, post-release up to k) rows; nothing after second k is kept."""
    seen = _rows(panel, panel["since_release_s"] <= k)
    pre = _rows(seen, seen["offset_s"] < 0)
    auc = _rows(seen, (seen["offset_s"] >= 0) & (seen["since_release_s"] < 0))
    post = _rows(seen, seen["since_release_s"] >= 0)
    return pre, auc, post


def _checked(row: dict[str, float], specs: list[Feature]) -> dict[str, float]:
    names = [f.name for f in specs]
    if sorted(row) != sorted(names):
        raise AssertionError(f"feature rows drifted from their specs: {set(row) ^ set(names)}")
    return {n: float(row[n]) for n in names}


def event_row(panel: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
    """The event-level features (pre-trigger, at-trigger, auction), known at the release."""
    pre, auc, _ = _split(panel, -1)
    return _checked(_pre_trigger(pre, info) | _at_trigger(info) | _auction(auc, pre, info), EVENT_FEATURES)


def decision_row(panel: dict[str, np.ndarray], info: EventInfo, k: int) -> dict[str, float]:
    """The post-release features of decision ``k``."""
    pre, auc, post = _split(panel, k)
    if len(post["offset_s"]) != k + 1:
        raise ValueError(f"{info.event_id}: the panel does not reach {k} s after the release")
    return _checked(_post_release(post, auc, pre, info, k), DECISION_FEATURES)


def sequence_row(panel: dict[str, np.ndarray], info: EventInfo, k: int) -> dict[str, np.ndarray]:
    """The per-second panel up to decision ``k`` as fixed-length float32 channels (left-padded)."""
    seen = _tail(_rows(panel, panel["since_release_s"] <= k), SEQUENCE_LENGTH)
    trig = float(info.trigger_price)
    tick = krx.tick_size(info.trigger_price, info.market, info.day)
    close = _filled_close(seen, trig)
    buy, sell = seen["buy_volume"], seen["sell_volume"]
    in_auction = (seen["offset_s"] >= 0) & (seen["since_release_s"] < 0)
    shown = in_auction & (np.nan_to_num(seen["indicative_price"]) > 0)
    indicative = np.where(shown, seen["indicative_price"], trig)
    phase = np.select(
        [seen["offset_s"] < 0, in_auction, seen["since_release_s"] == 0], [0.0, 1.0, 2.0], default=3.0
    )
    channels = {
        "seq_ret": np.log(close / trig),
        "seq_volume": np.log1p(seen["volume"]),
        "seq_flow": (buy - sell) / (buy + sell + 1.0),
        "seq_imbalance_l5": np.nan_to_num(seen["imbalance_l5"]),
        "seq_spread_ticks": np.nan_to_num(seen["spread"] / tick),
        "seq_indicative": np.log(indicative / trig),
        "seq_program": np.nan_to_num(seen["program_net_buy_change"]) * trig / EOK,
        "seq_phase": phase,
        "seq_mask": np.ones(len(close)),
    }
    pad = SEQUENCE_LENGTH - len(close)
    return {name: np.pad(v, (pad, 0)).astype(np.float32) for name, v in channels.items()}
