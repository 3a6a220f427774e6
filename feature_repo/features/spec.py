"""What a feature is (its spec: name, group, meaning, nulls, range, the inputs it needs) and the
constants every group shares."""

from __future__ import annotations

from dataclasses import dataclass

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
