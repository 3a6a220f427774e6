"""Run the Great Expectations suites over a tick dataset, one partition file at a time (pandas
data source), move failing rows of row-level expectations to quarantine with the expectation's
name as the reason, and build Data Docs.

Nothing is lost: for every file, rows in = rows kept + rows quarantined, and the runner checks it.
A critical expectation (schema, keys, sets) failing marks the run failed instead of quarantining.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from market import krx
from market.events.panels import PANEL_COLUMNS
from market.events.table import EVENT_SCHEMA
from market.krx.schema import (
    EVENT_TYPES,
    EVENT_VI_TYPES,
    LOGGED_VI_TYPES,
    SIDES,
    TICK_OPTIONAL_FIELDS,
    TICK_SCHEMA,
    VI_LOG_SCHEMA,
    VI_TYPES,
    SchemaMismatch,
    check_table,
)
from market.krx.sessions import SESSIONS
from validation.expectations import (
    PANEL_EXPECTATIONS,
    ROW_EXPECTATIONS,
    SEQUENCE_RULES,
    ExpectValuesFinite,
    cum_volume_gaps,
    timestamps_non_decreasing,
)

DATA_SOURCE, TICKS, VI_LOG, EVENTS, WINDOWS = "vicap_pandas", "ticks", "vi_log", "events", "windows"
COMPLETE = {"result_format": "COMPLETE", "exclude_unexpected_values": True}
# expectations whose failure stops the run (the file is not what vicap reads); the row-level
# rules of ROW_EXPECTATIONS quarantine their failing rows instead
CRITICAL = {
    "expect_table_columns_to_match_set",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_in_set",
}
# failures of these are findings about the sequence, reported, never a row's quarantine
SEQUENCE = {f"expect_krx_{name}" for name in SEQUENCE_RULES}
DUPLICATE = "exact duplicate of an earlier trade"


def tick_suite() -> gx.ExpectationSuite:
    exps: list = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*TICK_SCHEMA.names, "base_price"], exact_match=True)
    ]
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=c)
        for c in ("timestamp", "stock_code", "event_type", "price")
    ]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="side", value_set=sorted(SIDES.values())),
        gxe.ExpectColumnValuesToBeInSet(column="vi_type", value_set=list(VI_TYPES)),
        gxe.ExpectColumnValuesToBeInSet(column="session", value_set=list(SESSIONS)),
        gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="cum_volume", min_value=0),
    ]
    exps += [cls(column_list=cols) for cls, cols in ROW_EXPECTATIONS.values()]
    return gx.ExpectationSuite(name=TICKS, expectations=exps)


def vi_log_suite() -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=VI_LOG,
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("stock_code", "trigger_ts", "vi_type", "trigger_price")
        ]
        + [
            gxe.ExpectColumnValuesToBeInSet(column="vi_type", value_set=list(LOGGED_VI_TYPES)),
            gxe.ExpectColumnValuesToBeInSet(column="direction", value_set=[-1, 1]),
            gxe.ExpectColumnValuesToBeBetween(column="trigger_price", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="ref_price", min_value=1),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="release_ts", column_B="trigger_ts", ignore_row_if="either_value_is_missing"
            ),
        ],
    )


def events_suite() -> gx.ExpectationSuite:
    return gx.ExpectationSuite(
        name=EVENTS,
        expectations=[
            gxe.ExpectTableColumnsToMatchSet(column_set=EVENT_SCHEMA.names, exact_match=True),
            gxe.ExpectColumnValuesToBeUnique(column="event_id"),
            *(
                gxe.ExpectColumnValuesToNotBeNull(column=c)
                for c in ("event_id", "stock_code", "trigger_ts", "vi_type", "direction", "trigger_price")
            ),
            gxe.ExpectColumnValuesToBeInSet(column="vi_type", value_set=list(EVENT_VI_TYPES)),
            gxe.ExpectColumnValuesToBeInSet(column="direction", value_set=[-1, 1]),
            *(
                gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1)
                for c in ("trigger_price", "static_ref", "dynamic_ref", "auction_price")
            ),
            gxe.ExpectColumnValuesToBeBetween(column="auction_volume", min_value=0),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="release_ts", column_B="trigger_ts", ignore_row_if="either_value_is_missing"
            ),
        ],
    )


def windows_suite() -> gx.ExpectationSuite:
    exps: list = [
        gxe.ExpectTableColumnsToMatchSet(column_set=PANEL_COLUMNS, exact_match=True),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["event_id", "second"]),
        *(
            gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in ("event_id", "second", "offset_s", "since_release_s")
        ),
        gxe.ExpectColumnValuesToBeInSet(column="vi_status", value_set=[0, 1, 2]),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0)
            for c in ("volume", "buy_volume", "sell_volume", "trade_count", "indicative_volume")
        ),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=1) for c in ("open", "high", "low", "close")),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=f"imbalance_l{n}", min_value=-1, max_value=1)
            for n in (1, 5, 10)
        ),
    ]
    exps += [cls(column_list=cols) for cls, cols in PANEL_EXPECTATIONS.values()]
    return gx.ExpectationSuite(name=WINDOWS, expectations=exps)


@dataclass(frozen=True)
class ColumnCheck:
    """What a numeric column of a derived table must satisfy."""

    name: str
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None


def table_suite(name: str, keys: list[str], checks: list[ColumnCheck]) -> gx.ExpectationSuite:
    """A suite for a derived numeric table (features): unique keys, nulls only where allowed,
    values within their ranges, and no infinity anywhere."""
    exps: list = [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys) if len(keys) > 1
        else gxe.ExpectColumnValuesToBeUnique(column=keys[0]),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in keys),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c.name) for c in checks if not c.nullable),
        *(
            gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=c.lo, max_value=c.hi)
            for c in checks
            if c.lo is not None or c.hi is not None
        ),
        ExpectValuesFinite(column_list=[c.name for c in checks]),
    ]  # fmt: skip
    return gx.ExpectationSuite(name=name, expectations=exps)


class Validator:
    """A file data context under ``project_root`` with the vicap suites and checkpoints
    (and any ``extra`` suites a later stage brings, by name)."""

    def __init__(self, project_root: Path, extra: dict[str, gx.ExpectationSuite] | None = None) -> None:
        self.context = gx.get_context(mode="file", project_root_dir=str(project_root))
        ctx = self.context
        if ctx.variables.progress_bars is None or ctx.variables.progress_bars.get("globally"):
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            ctx.variables.save()
        try:
            source = ctx.data_sources.get(DATA_SOURCE)
        except KeyError:
            source = ctx.data_sources.add_pandas(name=DATA_SOURCE)
        self.checkpoints = {}
        suites = (
            (TICKS, tick_suite()),
            (VI_LOG, vi_log_suite()),
            (EVENTS, events_suite()),
            (WINDOWS, windows_suite()),
            *(extra or {}).items(),
        )
        for name, suite in suites:
            try:
                asset = source.get_asset(name)
            except LookupError:
                asset = source.add_dataframe_asset(name=name)
            try:
                batch = asset.get_batch_definition("partition")
            except KeyError:
                batch = asset.add_batch_definition_whole_dataframe("partition")
            suite = ctx.suites.add_or_update(suite)
            vd = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            self.checkpoints[name] = ctx.checkpoints.add_or_update(
                gx.Checkpoint(name=name, validation_definitions=[vd], result_format=COMPLETE)
            )

    def run(
        self, name: str, df: pd.DataFrame, run_name: str | None = None
    ) -> tuple[dict[int, list[str]], list[str]]:
        """(failing row index -> reasons, failed critical expectations) for one batch; ``run_name``
        names its result in Data Docs (a tick partition: YYYY-MM-DD_<code>)."""
        run_id = RunIdentifier(run_name=run_name) if run_name else None
        result = self.checkpoints[name].run(batch_parameters={"dataframe": df}, run_id=run_id)
        reasons: dict[int, list[str]] = {}
        critical: list[str] = []
        for suite_result in result.run_results.values():
            for r in suite_result.results:
                kind = r.expectation_config.type
                info = r.exception_info or {}
                raised = (
                    info.get("raised_exception")
                    if "raised_exception" in info
                    else any(isinstance(v, dict) and v.get("raised_exception") for v in info.values())
                )
                if raised:
                    raise RuntimeError(f"expectation {kind} could not run: {info}")
                if r.success:
                    continue
                column = r.expectation_config.kwargs.get("column")
                label = f"{kind}({column})" if column else kind
                if kind in CRITICAL:
                    critical.append(label)
                    continue
                for i in r.result.get("unexpected_index_list") or []:
                    reasons.setdefault(i, []).append(label)
        return reasons, critical

    def build_docs(self) -> Path:
        urls = self.context.build_data_docs()
        return Path(next(iter(urls.values())).removeprefix("file://"))


@dataclass
class ValidationReport:
    files: int = 0
    unreadable_files: int = 0
    rows_in: int = 0
    rows_kept: int = 0
    rows_quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    critical: list[str] = field(default_factory=list)
    docs: Path | None = None
    gaps: list[dict] = field(default_factory=list)  # partition, stock_code, timestamp, missing_shares
    out_of_order: Counter = field(default_factory=Counter)  # partition -> rows before their predecessor

    @property
    def gapped(self) -> list[str]:
        """Partitions with a gap in cum_volume (dropped trades in the feed)."""
        return sorted({g["partition"] for g in self.gaps})

    @property
    def ok(self) -> bool:
        return not self.critical and self.rows_in == self.rows_kept + self.rows_quarantined


def _quarantine(rows: pa.Table, reasons: list[str], target: Path) -> None:
    """Append rejected rows with their reason; an earlier run's quarantine of the file stays."""
    rejected = rows.append_column("reason", pa.array(reasons, pa.string()))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        rejected = pa.concat_tables([pq.read_table(target), rejected], promote_options="permissive")
    pq.write_table(rejected, target)


def _base_prices(root: Path) -> pd.DataFrame:
    inst = pq.read_table(
        root / "instruments.parquet", columns=["date", "stock_code", "base_price"]
    ).to_pandas()
    return inst.rename(columns={"date": "day"})


CATEGORICAL = ("stock_code", "stock_name", "market", "event_type", "vi_type", "vi_reason", "session")


def as_batch(df: pd.DataFrame) -> pd.DataFrame:
    """The frame GX validates: GX copies the whole batch for each metric, and copies of a
    consolidated frame with categorical labels cost a fraction of object-string ones (bench/validation)."""
    df = df.astype({c: "category" for c in CATEGORICAL if c in df.columns})
    return df.copy()  # consolidates the blocks once


def _row_faults(reasons: dict[int, list[str]], df: pd.DataFrame) -> dict[int, list[str]]:
    """The rows to quarantine: a fault of their own (sequence findings dropped), or a trade that
    exactly repeats an earlier one in every column of the file, cum_volume included: a resend that
    would count twice (one copy kept). A repeated book or indicative snapshot is a state seen
    again, not a fault."""
    faults = {i: [r for r in rs if r not in SEQUENCE] for i, rs in reasons.items()}
    faults = {i: rs for i, rs in faults.items() if rs}
    duplicated = (df.duplicated(keep="first") & (df["event_type"] == "trade")).to_numpy()
    for i in duplicated.nonzero()[0].tolist():
        faults.setdefault(i, []).append(DUPLICATE)
    return faults


def _sequence_findings(
    report: ValidationReport, df: pd.DataFrame, duplicates: list[int], partition: str
) -> None:
    """Gaps in cum_volume and rows out of time order in the feed as recorded, resends aside (a
    row quarantined for a fault of its own still traded: its shares are no gap)."""
    kept = df.drop(index=duplicates)
    report.gaps += [{"partition": partition, **g} for g in cum_volume_gaps(kept).to_dict("records")]
    late = int((~timestamps_non_decreasing(kept)).sum())
    if late:
        report.out_of_order[partition] = late


def validate_dataset(
    root: Path, reports_dir: Path, quarantine_dir: Path, on_file: Callable[[Path], None] | None = None
) -> ValidationReport:
    """Validate every tick partition and the VI log of ``root``; quarantine failing rows."""
    validator = Validator(reports_dir)
    report = ValidationReport()
    bases = _base_prices(root)
    for path in sorted((root / "ticks").glob("date=*/*.parquet")):
        report.files += 1
        if on_file:
            on_file(path)
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:  # cut short or not Parquet: keep the bytes aside
            target = quarantine_dir / "ticks" / path.parent.name / f"{path.name}.unreadable"
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
            report.critical.append(f"{path}: unreadable Parquet ({exc}); moved to {target}")
            report.unreadable_files += 1
            continue
        report.rows_in += table.num_rows
        try:
            check_table(table, TICK_SCHEMA, optional=TICK_OPTIONAL_FIELDS, source=str(path))
        except SchemaMismatch as exc:  # not a tick file vicap can read: the whole partition goes
            _quarantine(
                table, [str(exc)] * table.num_rows, quarantine_dir / "ticks" / path.parent.name / path.name
            )
            path.unlink()
            report.critical.append(str(exc))
            report.rows_quarantined += table.num_rows
            report.reasons.update({"schema mismatch": table.num_rows})
            continue
        df = table.drop_columns(
            [f.name for f in TICK_OPTIONAL_FIELDS if f.name in table.column_names]
        ).to_pandas()
        df["day"] = krx.seoul_dates(df["timestamp"])
        df = df.merge(bases, on=["day", "stock_code"], how="left").drop(columns="day")
        partition = f"{path.parent.name.removeprefix('date=')}_{path.stem}"  # no "/" in a GX key
        reasons, critical = validator.run(TICKS, as_batch(df), run_name=partition)
        report.critical += [f"{path}: {c}" for c in critical]
        # exact: every column of the file, the optional ones (recv_ts) included (base_price is the
        # stock-day's, the same on every row)
        optional = table.select([f.name for f in TICK_OPTIONAL_FIELDS if f.name in table.column_names])
        reasons = _row_faults(reasons, pd.concat([df, optional.to_pandas()], axis=1))
        duplicates = [i for i, rs in reasons.items() if DUPLICATE in rs]
        _sequence_findings(report, df, duplicates, f"{path.parent.name}/{path.name}")
        bad = sorted(reasons)
        if bad:
            target = quarantine_dir / "ticks" / path.parent.name / path.name
            _quarantine(table.take(pa.array(bad, pa.int64())), ["; ".join(reasons[i]) for i in bad], target)
            keep = sorted(set(range(len(df))) - set(bad))
            if keep:
                pq.write_table(table.take(pa.array(keep, pa.int64())), path)
            else:  # every row failed: the partition now lives in quarantine only
                path.unlink()
            for i in bad:
                report.reasons.update(reasons[i])
        report.rows_quarantined += len(bad)
        report.rows_kept += len(df) - len(bad)
    log_path = root / "vi_log.parquet"
    if log_path.exists():
        log = pq.read_table(log_path)
        extra = [c for c in log.column_names if c not in VI_LOG_SCHEMA.names]
        reasons, critical = validator.run(VI_LOG, log.drop_columns(extra).to_pandas())
        report.critical += [f"{log_path}: {c}" for c in critical]
        report.critical += [f"{log_path}: row {i}: {', '.join(r)}" for i, r in sorted(reasons.items())]
    report.docs = validator.build_docs()
    return report


def validate_tables(
    tables: dict[str, pd.DataFrame], suites: dict[str, gx.ExpectationSuite], reports_dir: Path
) -> tuple[list[str], Path]:
    """Run each named suite over its table (derived data: a failure is a bug, not rows to set
    aside); returns the failures and the Data Docs index."""
    validator = Validator(reports_dir, extra=suites)
    failed: list[str] = []
    for name, df in tables.items():
        reasons, critical = validator.run(name, df)
        failed += [f"{name}: {c}" for c in critical]
        counts = Counter(r for rs in reasons.values() for r in rs)
        failed += [f"{name}: {reason} fails on {n} rows" for reason, n in counts.items()]
    return failed, validator.build_docs()


def validate_events(events_dir: Path, reports_dir: Path) -> list[str]:
    """Run the events and windows suites over ``events_dir``; returns the failed expectations."""
    tables = {
        EVENTS: pq.read_table(events_dir / "events.parquet").to_pandas(),
        WINDOWS: pq.read_table(events_dir / "windows.parquet").to_pandas(),
    }
    return validate_tables(tables, {}, reports_dir)[0]
