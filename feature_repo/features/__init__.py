"""The VI features: pure functions over one event's 1-second panel up to a decision time.

One code path: the batch builder (``feature_repo.build``) and the live path (``feature_repo.live``)
both build the panel with ``market.events.panels`` and call :func:`event_row`, :func:`decision_row` and
:func:`sequence_row` here. Each group's module holds its specs beside the function that computes
them: ``pre_trigger``, ``at_trigger``, ``auction``, ``post_release``, ``sequence``; ``spec`` says
what a feature is, ``inputs`` what the functions read, ``calc`` the small math they share.

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

import numpy as np

from feature_repo.features.at_trigger import AT_TRIGGER, at_trigger_row
from feature_repo.features.auction import AUCTION, auction_row, release_price
from feature_repo.features.inputs import (
    PANEL_INPUTS,
    EventInfo,
    VIHistory,
    decision_time_us,
    panel_arrays,
    rows_where,
)
from feature_repo.features.post_release import POST_RELEASE, post_release_row
from feature_repo.features.pre_trigger import PRE_TRIGGER, pre_trigger_row
from feature_repo.features.sequence import SEQUENCE_CHANNELS, sequence_row
from feature_repo.features.spec import (
    DECISION_OFFSETS,
    EOK,
    FRACTION,
    LIVE_FEED_LACKS,
    MARKET_VI_WINDOW_S,
    MAX_DECISION_OFFSET,
    PANEL_BEFORE_S,
    RATIO01,
    SAME_DAY,
    SAME_DAY_DIR,
    SAME_DAY_UP,
    SEQUENCE_LENGTH,
    US,
    VS_BASE,
    Feature,
    feature_specs,
)

__all__ = [
    "AT_TRIGGER", "AUCTION", "DECISION_FEATURES", "DECISION_OFFSETS", "EOK", "EVENT_FEATURES", "FRACTION",
    "LIVE_FEED_LACKS", "MARKET_VI_WINDOW_S", "MAX_DECISION_OFFSET", "PANEL_BEFORE_S", "PANEL_INPUTS",
    "POST_RELEASE", "PRE_TRIGGER", "RATIO01", "SAME_DAY", "SAME_DAY_DIR", "SAME_DAY_UP",
    "SEQUENCE_CHANNELS", "SEQUENCE_LENGTH", "US", "VS_BASE", "EventInfo", "Feature", "VIHistory",
    "at_trigger_row", "auction_row", "decision_row", "decision_time_us", "event_row", "feature_specs",
    "panel_arrays", "post_release_row", "pre_trigger_row", "release_price", "sequence_row",
]  # fmt: skip

EVENT_FEATURES = PRE_TRIGGER + AT_TRIGGER + AUCTION
DECISION_FEATURES = POST_RELEASE


def _split(panel: dict[str, np.ndarray], k: int) -> tuple[dict, dict, dict]:
    """(pre-trigger, auction, post-release up to k) rows; nothing after second k is kept."""
    seen = rows_where(panel, panel["since_release_s"] <= k)
    pre = rows_where(seen, seen["offset_s"] < 0)
    auc = rows_where(seen, (seen["offset_s"] >= 0) & (seen["since_release_s"] < 0))
    post = rows_where(seen, seen["since_release_s"] >= 0)
    return pre, auc, post


def _checked(row: dict[str, float], specs: list[Feature]) -> dict[str, float]:
    names = [f.name for f in specs]
    if sorted(row) != sorted(names):
        raise AssertionError(f"feature rows drifted from their specs: {set(row) ^ set(names)}")
    return {n: float(row[n]) for n in names}


def event_row(panel: dict[str, np.ndarray], info: EventInfo) -> dict[str, float]:
    """The event-level features (pre-trigger, at-trigger, auction), known at the release."""
    pre, auc, _ = _split(panel, -1)
    return _checked(
        pre_trigger_row(pre, info) | at_trigger_row(info) | auction_row(auc, pre, info), EVENT_FEATURES
    )


def decision_row(panel: dict[str, np.ndarray], info: EventInfo, k: int) -> dict[str, float]:
    """The post-release features of decision ``k``."""
    pre, auc, post = _split(panel, k)
    if len(post["offset_s"]) != k + 1:
        raise ValueError(f"{info.event_id}: the panel does not reach {k} s after the release")
    return _checked(post_release_row(post, auc, pre, info, k), DECISION_FEATURES)
