"""What a feature is (its spec: name, group, meaning, nulls, range, the inputs it needs) and the
constants every group shares."""

from __future__ import annotations

from dataclasses import dataclass

from market.krx import DAILY_LIMIT_RATE_PCT

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


FRACTION = (-1.0, 1.0)  # imbalances and shares: -1..1 by their definition
RATIO01 = (0.0, 1.0)

# Ranges of price ratios from the daily limits (가격제한폭), not guesses: every price of a day lies
# within base x (1 -/+ 30%), so one of them over another, minus 1, lies within SAME_DAY (a sweep
# through a thin book may carry an auction price 31% past its trigger, and still be in range).
# Each bound is widened by a float rounding's worth: 700 / 1000 - 1 is -0.30000000000000004.
_LIMIT, _ROUNDING = DAILY_LIMIT_RATE_PCT / 100, 1e-9
VS_BASE = (-_LIMIT - _ROUNDING, _LIMIT + _ROUNDING)  # a price of the day over its base (기준가), minus 1
_LOW, _HIGH = (1 - _LIMIT) / (1 + _LIMIT) - 1, (1 + _LIMIT) / (1 - _LIMIT) - 1
SAME_DAY = (_LOW - _ROUNDING, _HIGH + _ROUNDING)  # about -0.46 .. +0.86
SAME_DAY_DIR = (-SAME_DAY[1], SAME_DAY[1])  # a SAME_DAY ratio signed in the VI's direction
SAME_DAY_UP = (0.0, SAME_DAY[1])  # a move's size: a high over a price, or a range over a price
