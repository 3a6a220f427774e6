"""The Great Expectations suites of the feature tables (built from the feature specs) and of the
label table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from feature_repo import features
from feature_repo.context import STOCK_CONTEXT
from feature_repo.labels import HORIZONS_S, MAE_HORIZONS_S
from validation.runner import ColumnCheck, table_suite, validate_tables

KEYS = {
    "vi_event_features": ["event_id"],
    "vi_decision_features": ["event_id", "decision_offset_s"],
    "stock_context": ["stock_code", "session"],
    "labels": ["event_id", "decision_offset_s"],
}
SPECS = {
    "vi_event_features": features.EVENT_FEATURES,
    "vi_decision_features": features.DECISION_FEATURES,
    "stock_context": STOCK_CONTEXT,
}
# the prices of a return or an excursion lie within one day's limits (가격제한폭)
LABEL_CHECKS = [
    ColumnCheck("decision_price", lo=1.0),
    ColumnCheck("round_trip_cost", lo=0.0, hi=0.02),
    *(ColumnCheck(f"ret_{h}s", lo=features.SAME_DAY[0], hi=features.SAME_DAY[1]) for h in HORIZONS_S),
    *(ColumnCheck(f"mae_{h}s", lo=0.0, hi=features.SAME_DAY_UP[1]) for h in MAE_HORIZONS_S),
    ColumnCheck("best_entry_s", lo=0, hi=features.MAX_DECISION_OFFSET),
    ColumnCheck("best_entry_rebound_s", lo=0, hi=features.MAX_DECISION_OFFSET),
]


def suites() -> dict:
    checks = {
        name: [ColumnCheck(f.name, f.nullable, f.lo, f.hi) for f in specs] for name, specs in SPECS.items()
    }
    return {name: table_suite(name, KEYS[name], c) for name, c in (checks | {"labels": LABEL_CHECKS}).items()}


def sequence_problems(table: pa.Table) -> list[str]:
    """Every sequence channel has SEQUENCE_LENGTH finite values (arrays are outside GX's column checks)."""
    problems = []
    for name in features.SEQUENCE_CHANNELS:
        lengths = pc.list_value_length(table[name])
        if table.num_rows and pc.min(lengths).as_py() != features.SEQUENCE_LENGTH:
            problems.append(f"vi_sequence: {name} has arrays shorter than {features.SEQUENCE_LENGTH}")
        values = pc.list_flatten(table[name])
        if not pc.all(pc.is_finite(values)).as_py() and len(values):
            problems.append(f"vi_sequence: {name} holds a non-finite value")
    return problems


def validate_features(tables: dict[str, pa.Table], reports_dir: Path) -> tuple[list[str], Path]:
    """``tables``: the feature tables and ``labels``, by name."""
    frames = {name: tables[name].to_pandas() for name in KEYS}
    failed, docs = validate_tables(frames, suites(), reports_dir)
    return failed + sequence_problems(tables["vi_sequence"]), docs
