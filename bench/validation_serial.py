"""The tick validation loop as it was before issue 12's parallel runner (commit f3e05c3), kept as
the baseline of ``bench/validation.py``: one process, partition after partition; each batch made
categorical by astype and a consolidating copy; base prices merged by calendar date; the suite
run through a GX checkpoint whose results carry each failing row's pandas query; duplicates
searched over every row; the verdict written into the partition itself. Its suite is today's
with labels and quantities checked by GX's column expectations, as then. Only the benchmark
imports it, on a scratch copy."""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow.parquet as pq
from great_expectations.core.run_identifier import RunIdentifier

from market import krx
from market.krx.schema import EVENT_TYPES, SIDES, TICK_OPTIONAL_FIELDS, VI_TYPES
from market.krx.sessions import SESSIONS
from validation.expectations import VALUE_EXPECTATIONS, cum_volume_gaps, timestamps_non_decreasing
from validation.runner import CATEGORICAL, DUPLICATE, SEQUENCE, Validator, tick_suite


def as_batch(df: pd.DataFrame) -> pd.DataFrame:
    """The frame it gave GX: labels made categorical, then the blocks consolidated by a copy."""
    df = df.astype({c: "category" for c in CATEGORICAL if c in df.columns})
    return df.copy()


SUITE = "ticks_f3e05c3"


def _suite() -> gx.ExpectationSuite:
    exps = [
        e
        for e in tick_suite().expectations
        if e.expectation_type.removeprefix("expect_krx_") not in VALUE_EXPECTATIONS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="side", value_set=sorted(SIDES.values())),
        gxe.ExpectColumnValuesToBeInSet(column="vi_type", value_set=list(VI_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="session", value_set=list(SESSIONS)),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="cum_volume", min_value=0),
    ]
    return gx.ExpectationSuite(name=SUITE, expectations=exps)


def _checkpoint(validator: Validator) -> gx.Checkpoint:
    result_format = {"result_format": "COMPLETE", "exclude_unexpected_values": True}
    definition = validator.definitions[SUITE]
    checkpoint = gx.Checkpoint(name=SUITE, validation_definitions=[definition], result_format=result_format)
    return validator.context.checkpoints.add_or_update(checkpoint)


def _failing_rows(checkpoint: gx.Checkpoint, df: pd.DataFrame, run_name: str) -> dict[int, list[str]]:
    result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=run_name))
    reasons: dict[int, list[str]] = {}
    for suite_result in result.run_results.values():
        for r in suite_result.results:
            for i in [] if r.success else r.result.get("unexpected_index_list") or []:
                reasons.setdefault(i, []).append(r.expectation_config.type)
    return reasons


def validate_serial(root: Path, reports_dir: Path) -> int:
    """Validate every tick partition of ``root`` in this process; returns the rows read."""
    validator = Validator(reports_dir, extra={SUITE: _suite()})
    checkpoint = _checkpoint(validator)
    inst = pq.read_table(root / "instruments.parquet", columns=["date", "stock_code", "base_price"])
    bases = inst.to_pandas().rename(columns={"date": "day"})
    rows = 0
    for path in sorted((root / "ticks").glob("date=*/*.parquet")):
        table = pq.read_table(path)
        rows += table.num_rows
        optional = [f.name for f in TICK_OPTIONAL_FIELDS if f.name in table.column_names]
        df = table.drop_columns(optional).to_pandas()
        df["day"] = krx.seoul_dates(df["timestamp"])
        df = df.merge(bases, on=["day", "stock_code"], how="left").drop(columns="day")
        run_name = f"{path.parent.name.removeprefix('date=')}_{path.stem}"
        reasons = _failing_rows(checkpoint, as_batch(df), run_name)
        whole = pd.concat([df, table.select(optional).to_pandas()], axis=1)
        faults = {i: [r for r in rs if r not in SEQUENCE] for i, rs in reasons.items()}
        faults = {i: rs for i, rs in faults.items() if rs}
        duplicated = (whole.duplicated(keep="first") & (whole["event_type"] == "trade")).to_numpy()
        for i in duplicated.nonzero()[0].tolist():
            faults.setdefault(i, []).append(DUPLICATE)
        kept = df.drop(index=[i for i, rs in faults.items() if DUPLICATE in rs])
        cum_volume_gaps(kept)
        timestamps_non_decreasing(kept)
        if faults:
            keep = sorted(set(range(len(df))) - set(faults))
            pq.write_table(table.take(keep), path)
    validator.build_docs()
    return rows
