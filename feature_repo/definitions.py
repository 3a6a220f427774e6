"""The Feast objects of vicap: entities, sources, feature views and feature services.

``feast apply`` (run in this folder) finds the module-level objects below, built over
``../data/features`` like ``feature_store.yaml``; ``vicap features apply`` builds the same objects
over the settings' data root with :func:`feast_objects`. FileSource paths are absolute: Feast
resolves relative ones against the working directory, not the repo.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Float32, Float64

from feature_repo.build import CONTEXT_TABLE, DECISION_TABLE, EVENT_TABLE, SEQUENCE_TABLE
from feature_repo.context import STOCK_CONTEXT
from feature_repo.features import AT_TRIGGER, AUCTION, POST_RELEASE, PRE_TRIGGER, SEQUENCE_CHANNELS, Feature

REPO_DIR = Path(__file__).resolve().parent
DEFAULT_FEATURES_DIR = REPO_DIR.parent / "data" / "features"
SERVICE, SEQUENCE_SERVICE = "vi_rebound_v1", "vi_sequence_v1"
LIVE_SERVICE = "vi_rebound_live_v1"  # only what the live KIS feed supplies
EVENT_PUSH, DECISION_PUSH, SEQUENCE_PUSH = "vi_event_push", "vi_decision_push", "vi_sequence_push"


def _fields(specs: list[Feature]) -> list[Field]:
    return [Field(name=f.name, dtype=Float64, description=f.doc) for f in specs]


def feast_objects(features_dir: Path) -> dict[str, object]:
    """Every Feast object, by name, over the tables in ``features_dir``."""
    vi_event = Entity(
        name="vi_event", join_keys=["event_id"], value_type=ValueType.STRING,
        description="one VI (변동성완화장치) event: <stock_code>-<trigger time, µs since the epoch>",
    )  # fmt: skip
    decision = Entity(
        name="decision", join_keys=["decision_offset_s"], value_type=ValueType.INT64,
        description="seconds after the VI release at which a decision is taken (0..9)",
    )  # fmt: skip
    stock = Entity(
        name="stock", join_keys=["stock_code"], value_type=ValueType.STRING, description="6-digit code"
    )

    def source(table: str) -> FileSource:
        return FileSource(
            name=f"{table}_source",
            path=str((Path(features_dir) / f"{table}.parquet").resolve()),
            timestamp_field="event_timestamp",
        )

    event_push = PushSource(name=EVENT_PUSH, batch_source=source(EVENT_TABLE))
    decision_push = PushSource(name=DECISION_PUSH, batch_source=source(DECISION_TABLE))
    sequence_push = PushSource(name=SEQUENCE_PUSH, batch_source=source(SEQUENCE_TABLE))

    def event_view(name: str, specs: list[Feature], doc: str) -> FeatureView:
        # stamped at the release; decisions come within seconds of it
        return FeatureView(
            name=name, entities=[vi_event], ttl=timedelta(hours=1), schema=_fields(specs),
            source=event_push, online=True, description=doc,
        )  # fmt: skip

    pre_trigger = event_view("vi_pre_trigger", PRE_TRIGGER, "the 120 s before the trigger")
    at_trigger = event_view("vi_at_trigger", AT_TRIGGER, "the VI as seen at its trigger")
    auction = event_view("vi_auction", AUCTION, "the VI call auction and its uncross")
    post_release = FeatureView(
        name="vi_post_release", entities=[vi_event, decision], ttl=timedelta(minutes=5),
        schema=_fields(POST_RELEASE), source=decision_push, online=True,
        description="the seconds from the release to the decision",
    )  # fmt: skip
    sequence = FeatureView(
        name="vi_sequence", entities=[vi_event, decision], ttl=timedelta(minutes=5),
        schema=[Field(name=n, dtype=Array(Float32), description=d) for n, d in SEQUENCE_CHANNELS.items()],
        source=sequence_push, online=True,
        description="the 1-second panel up to the decision, fixed-length arrays for sequence models",
    )  # fmt: skip
    context = FeatureView(
        name="stock_context", entities=[stock], ttl=timedelta(days=10), schema=_fields(STOCK_CONTEXT),
        source=source(CONTEXT_TABLE), online=True,
        description="the stock as of the previous close (stamped at the session's opening call)",
    )  # fmt: skip
    service = FeatureService(
        name=SERVICE, features=[pre_trigger, at_trigger, auction, post_release, context],
        description="tabular inputs of the VI rebound/continuation models",
    )  # fmt: skip
    live_service = FeatureService(
        name=LIVE_SERVICE,
        features=[
            view[[f.name for f in specs if f.live]]
            for view, specs in (
                (pre_trigger, PRE_TRIGGER), (at_trigger, AT_TRIGGER), (auction, AUCTION),
                (post_release, POST_RELEASE), (context, STOCK_CONTEXT),
            )
        ],
        description="vi_rebound_v1 without the features the live KIS feed cannot supply (investor "
        "nets, news and disclosure flags): for models meant to trade live",
    )  # fmt: skip
    sequence_service = FeatureService(
        name=SEQUENCE_SERVICE, features=[sequence, context],
        description="inputs of the sequence models (Transformer/LSTM)",
    )  # fmt: skip
    objects = [
        vi_event, decision, stock, event_push, decision_push, sequence_push, pre_trigger, at_trigger,
        auction, post_release, sequence, context, service, live_service, sequence_service,
    ]  # fmt: skip
    return {o.name: o for o in objects}


# what `feast apply` in this folder registers
_objects = feast_objects(DEFAULT_FEATURES_DIR)
vi_event, decision, stock = _objects["vi_event"], _objects["decision"], _objects["stock"]
vi_event_push, vi_decision_push, vi_sequence_push = (
    _objects[n] for n in (EVENT_PUSH, DECISION_PUSH, SEQUENCE_PUSH)
)
vi_pre_trigger, vi_at_trigger, vi_auction = (
    _objects["vi_pre_trigger"],
    _objects["vi_at_trigger"],
    _objects["vi_auction"],
)
vi_post_release, vi_sequence, stock_context = (
    _objects["vi_post_release"], _objects["vi_sequence"], _objects["stock_context"]
)  # fmt: skip
vi_rebound_v1, vi_sequence_v1 = _objects[SERVICE], _objects[SEQUENCE_SERVICE]
