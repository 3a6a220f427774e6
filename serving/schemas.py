"""The model service's requests and answers: one pydantic model each, read by the BentoML service
(its OpenAPI schema and the 400 on a bad payload) and by its clients (the bench, the live executor).
Unknown fields are refused: a client that misspells a field must hear it, not get a default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from training.dataset import CAUSES, ENTRY_SECONDS

EVENT_ID_PATTERN = r"^\d{6}-\d{1,20}$"  # <stock_code>-<trigger time, µs since the epoch>


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionKey(_Strict):
    event_id: str = Field(
        ..., pattern=EVENT_ID_PATTERN, description="the VI: <stock_code>-<trigger time, µs since the epoch>"
    )
    decision_offset: int = Field(
        ..., ge=0, le=ENTRY_SECONDS - 1, description="seconds after the VI release (해제) of the decision"
    )


class Prediction(_Strict):
    rebound_probability: float = Field(
        ..., description="probability that the price moves against the VI's direction by more than costs"
    )
    expected_return: float = Field(
        ..., description="expected price return over horizon_s after the decision (fraction; + is up)"
    )
    entry_second: int = Field(..., description="most likely best entry second after the release (0-9)")
    cause_probabilities: dict[str, float] = Field(
        ..., description=f"the VI's cause: {', '.join(CAUSES)}; sums to 1"
    )
    model_version: str
    horizon_s: int
    continuation_probability: float = Field(..., description="the move continues by more than costs")


class ActRequest(DecisionKey):
    """A decision of the registered policy: the VI's features at ``decision_offset`` and the
    trader's state, as the RL environment defines it (training/rl/interpreters.py)."""

    step_s: int | None = Field(
        None, ge=0, description="seconds since the first decision second (default: decision_offset)"
    )
    holding: bool = False
    entry_price: float = Field(0.0, ge=0, description="price of the held lot (0 when flat)")
    start_price: float = Field(..., gt=0, description="last trade price at the first decision second")
    last_price: float = Field(..., gt=0, description="last trade price now")


class Action(_Strict):
    action: str = Field(..., description="hold | buy | sell")
    policy_version: str


class Metadata(_Strict):
    model_version: str
    model_kind: str
    policy_version: str | None
    feature_service: str
    feature_list_hash: str
    features: list[str]
    sequence_channels: list[str]
    online_store: str
    horizon_s: int
    causes: list[str]
