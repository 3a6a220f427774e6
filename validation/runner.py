"""Run the Great Expectations suites over a tick dataset, one partition file at a time (pandas
data source, partitions in parallel: processes or Ray tasks), and record the verdict beside the
data without touching it (``market.krx.dataset``: the quarantine's rejected rows with their reason,
``validation_summary.json``); then Data Docs and the readable report (``validation.report``).

Nothing is lost: rows in = accepted + quarantined, counted from the files on disk afterwards (the
accepted view that every later stage reads, the quarantine files, the raw files). A row that fails
any row-level expectation, a null key or a value outside its set included, is quarantined with
the expectation as its reason; a file that cannot be read or is not in the tick schema is set
aside whole and makes the run fail. Gaps in cum_volume and rows out of time order are findings
about the sequence: reported, and the rows around them kept.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from market.events.panels import PANEL_COLUMNS
from market.events.table import EVENT_SCHEMA
from market.krx.clock import seoul_day_number
from market.krx.dataset import (
    EXCLUDED,
    VERDICT_FILE,
    clear_verdict,
    connect,
    partition_name,
    quarantine_file,
    tick_partitions,
    ticks_source,
)
from market.krx.schema import (
    EVENT_VI_TYPES,
    LOGGED_VI_TYPES,
    TICK_OPTIONAL_FIELDS,
    TICK_SCHEMA,
    VI_LOG_SCHEMA,
    SchemaMismatch,
    check_table,
)
from market.parallel import TaskRunner
from validation.expectations import (
    KEYS,
    PANEL_EXPECTATIONS,
    ROW_EXPECTATIONS,
    SEQUENCE_RULES,
    VALUE_EXPECTATIONS,
    ExpectValuesFinite,
    cum_volume_gaps,
    timestamps_non_decreasing,
)

DATA_SOURCE, TICKS, VI_LOG, EVENTS, WINDOWS = "vicap_pandas", "ticks", "vi_log", "events", "windows"
# every failing row's index (the quarantine's), but neither the failing values nor a pandas query
# listing those rows again: each costs a pass over the batch per expectation
COMPLETE = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
}
# expectations about the table as a whole: their failure sets the partition aside and fails the
# run; every other expectation's failing rows go to quarantine
CRITICAL = {"expect_table_columns_to_match_set"}
# failures of these are findings about the sequence, reported, never a row's quarantine
SEQUENCE = {f"expect_krx_{name}" for name in SEQUENCE_RULES}
DUPLICATE = "exact duplicate of an earlier trade"


def tick_suite() -> gx.ExpectationSuite:
    exps: list = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*TICK_SCHEMA.names, "base_price"], exact_match=True)
    ]
    exps += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS]
    exps += [
        cls(column_list=cols) for cls, cols in (*VALUE_EXPECTATIONS.values(), *ROW_EXPECTATIONS.values())
    ]
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


def _result_id(suite: str, run_name: str, run_time: dt.datetime) -> ValidationResultIdentifier:
    """The key GX stores a validation result under (a whole-dataframe batch of our data source)."""
    run_id = RunIdentifier(run_name=run_name, run_time=run_time)
    return ValidationResultIdentifier(ExpectationSuiteIdentifier(suite), run_id, f"{DATA_SOURCE}-{suite}")


class Validator:
    """A file data context under ``project_root`` with the vicap suites and validation definitions (and any
    ``extra`` suites a later stage brings, by name). ``setup=False`` opens a context a first
    Validator set up, for the ticks checkpoint only: a worker process reads the configuration and
    never writes it, so parallel workers do not race on its files."""

    def __init__(
        self, project_root: Path, extra: dict[str, gx.ExpectationSuite] | None = None, setup: bool = True
    ) -> None:
        self.context = gx.get_context(mode="file", project_root_dir=str(project_root))
        ctx = self.context
        if not setup:
            self.definitions = {TICKS: ctx.validation_definitions.get(TICKS)}
            return
        if ctx.variables.progress_bars is None or ctx.variables.progress_bars.get("globally"):
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            ctx.variables.save()
        try:
            source = ctx.data_sources.get(DATA_SOURCE)
        except KeyError:
            source = ctx.data_sources.add_pandas(name=DATA_SOURCE)
        self.definitions = {}
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
            self.definitions[name] = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )

    def run(
        self, name: str, df: pd.DataFrame, run_name: str | None = None, run_time: dt.datetime | None = None
    ) -> tuple[dict[int, list[str]], list[str]]:
        """(failing row index -> reasons, failed critical expectations) for one batch; ``run_name``
        names its result in Data Docs (a tick partition: YYYY-MM-DD_<code>), ``run_time`` groups
        the results of one validation there (default: now)."""
        # the validation definition itself (a checkpoint around it would add only its own checks):
        # it stores the result, which Data Docs then show
        run_time = run_time or dt.datetime.now(dt.UTC)
        run_id = RunIdentifier(run_name=run_name, run_time=run_time)
        result = self.definitions[name].run(
            batch_parameters={"dataframe": df}, result_format=COMPLETE, run_id=run_id
        )
        # a dataframe batch carries no asset name where Data Docs look for it ("Data asset: None")
        result.meta["batch_spec"] = {**result.meta.get("batch_spec", {}), "data_asset_name": name}
        self.context.validation_results_store.set(_result_id(name, run_name, run_time), result)
        reasons: dict[int, list[str]] = {}
        critical: list[str] = []
        for r in result.results:
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

    def build_docs(self, results: list[ValidationResultIdentifier] | None = None) -> Path:
        """Render ``results`` (default: every stored result) and the index; returns the index."""
        urls = self.context.build_data_docs(resource_identifiers=results)
        return Path(next(iter(urls.values())).removeprefix("file://"))


@dataclass
class PartitionVerdict:
    """What validation found in one stock-day file (a row of ``validation_summary.json``)."""

    partition: str  # date=YYYY-MM-DD/<code>.parquet
    bytes: int  # the file's size when judged: a changed file is refused by the accepted view
    status: str = "ok"  # ok | unreadable | schema_mismatch (both set aside whole)
    rows: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    gaps: list[dict] = field(default_factory=list)  # stock_code, timestamp (ISO), missing_shares
    out_of_order: int = 0
    critical: list[str] = field(default_factory=list)
    gx_run: str | None = None  # the run name of its GX validation result (YYYY-MM-DD_<code>)

    @property
    def accepted(self) -> int:
        return self.rows - self.quarantined


@dataclass
class ValidationReport:
    partitions: list[PartitionVerdict] = field(default_factory=list)
    vi_log_failures: list[str] = field(default_factory=list)
    # rows in / accepted / quarantined as counted afterwards from the files on disk
    on_disk: dict[str, int] = field(default_factory=dict)
    docs: Path | None = None
    html: Path | None = None

    @property
    def files(self) -> int:
        return len(self.partitions)

    @property
    def unreadable_files(self) -> int:
        return sum(p.status == "unreadable" for p in self.partitions)

    @property
    def rows_in(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def rows_accepted(self) -> int:
        return sum(p.accepted for p in self.partitions)

    @property
    def rows_quarantined(self) -> int:
        return sum(p.quarantined for p in self.partitions)

    @property
    def reasons(self) -> Counter:
        return sum((Counter(p.reasons) for p in self.partitions), Counter())

    @property
    def critical(self) -> list[str]:
        return [c for p in self.partitions for c in p.critical] + self.vi_log_failures

    @property
    def gaps(self) -> list[dict]:
        return [{"partition": p.partition, **g} for p in self.partitions for g in p.gaps]

    @property
    def gapped(self) -> list[str]:
        """Partitions with a gap in cum_volume (dropped trades in the feed)."""
        return [p.partition for p in self.partitions if p.gaps]

    @property
    def out_of_order(self) -> dict[str, int]:
        return {p.partition: p.out_of_order for p in self.partitions if p.out_of_order}

    @property
    def balanced(self) -> bool:
        """Rows in = accepted + quarantined, on disk, and the same as the verdict says."""
        d = self.on_disk
        return d.get("rows_in") == d.get("accepted", 0) + d.get("quarantined", 0) and (
            d.get("rows_in"),
            d.get("accepted"),
            d.get("quarantined"),
        ) == (self.rows_in, self.rows_accepted, self.rows_quarantined)

    @property
    def ok(self) -> bool:
        return not self.critical and self.balanced

    def summary(self) -> dict:
        """``validation_summary.json``: the same bytes for the same data, run after run."""
        return {
            "rows_in": self.rows_in,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "reasons": dict(sorted(self.reasons.items())),
            "gapped": self.gapped,
            "vi_log_failures": self.vi_log_failures,
            "partitions": {p.partition: asdict(p) for p in self.partitions},
        }


def _base_prices(root: Path) -> dict[tuple[str, str], int]:
    """(YYYY-MM-DD, stock_code) -> the stock-day's base price (기준가)."""
    inst = pq.read_table(root / "instruments.parquet", columns=["date", "stock_code", "base_price"])
    return {
        (str(d), c): b
        for d, c, b in zip(*(inst[c].to_pylist() for c in ("date", "stock_code", "base_price")), strict=True)
    }


CATEGORICAL = ("stock_code", "stock_name", "market", "event_type", "vi_type", "vi_reason", "session")


def missing_values(table: pa.Table) -> dict[int, list[str]]:
    """Rows with a null where the tick schema requires a value, outside the keys (those fail GX's
    not-null expectations): read from the file's null counts, so a clean file costs nothing."""
    rows: dict[int, list[str]] = {}
    for name in table.column_names:
        if name in KEYS or not table[name].null_count or name not in TICK_SCHEMA.names:
            continue
        for i in np.flatnonzero(table[name].is_null().to_numpy(zero_copy_only=False)).tolist():
            rows.setdefault(i, []).append(f"missing {name} (the tick schema requires it)")
    return rows


def _row_faults(reasons: dict[int, list[str]], table: pa.Table) -> dict[int, list[str]]:
    """The rows to quarantine: a fault of their own (sequence findings dropped), or a trade that
    exactly repeats an earlier one in every column of the file (cum_volume and recv_ts included):
    a resend that would count twice (one copy kept). A repeated book or indicative snapshot is a
    state seen again, not a fault."""
    faults = {i: [r for r in rs if r not in SEQUENCE] for i, rs in reasons.items()}
    faults = {i: rs for i, rs in faults.items() if rs}
    is_trade = pc.equal(table["event_type"], "trade").to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(is_trade)
    trades = table.take(rows).to_pandas()
    for i in rows[trades.duplicated(keep="first").to_numpy()].tolist():
        faults.setdefault(i, []).append(DUPLICATE)
    return faults


def _sequence_findings(verdict: PartitionVerdict, df: pd.DataFrame, duplicates: list[int]) -> None:
    """Gaps in cum_volume and rows out of time order in the feed as recorded, resends aside (a
    row quarantined for a fault of its own still traded: its shares are no gap)."""
    kept = df[["stock_code", "event_type", "timestamp", "volume", "cum_volume"]]
    kept = kept.drop(index=duplicates) if duplicates else kept
    gaps = cum_volume_gaps(kept)
    gaps["timestamp"] = gaps["timestamp"].map(pd.Timestamp.isoformat)
    verdict.gaps = gaps.to_dict("records")
    verdict.out_of_order = int((~timestamps_non_decreasing(kept)).sum())


def _quarantine(root: Path, verdict: PartitionVerdict, table: pa.Table, rows: dict[int, list[str]]) -> None:
    """Write the partition's rejected rows with their row number in the raw file and reason."""
    order = sorted(rows)
    verdict.quarantined = len(order)
    verdict.reasons = dict(sorted(Counter(r for i in order for r in rows[i]).items()))
    if not order:
        return
    rejected = table.take(pa.array(order, pa.int64()))
    rejected = rejected.append_column("file_row_number", pa.array(order, pa.int64()))
    rejected = rejected.append_column("partition", pa.array([verdict.partition] * len(order), pa.string()))
    rejected = rejected.append_column("reason", pa.array(["; ".join(rows[i]) for i in order], pa.string()))
    target = quarantine_file(root, verdict.partition)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rejected, target)


@dataclass(frozen=True)
class PartitionTask:
    root: str
    path: str
    reports_dir: str
    base_price: int | None  # the stock-day's, from instruments.parquet
    run_time: str  # the validate_dataset call's (ISO): its results' time in Data Docs, and its key


# the context of the current validate_dataset call, by (reports_dir, run_time): set in the
# calling process before its workers fork, so they start with it; a Ray worker opens its own
_VALIDATORS: dict[tuple[str, str], Validator] = {}


def _worker_validator(reports_dir: str, run_time: str) -> Validator:
    if (reports_dir, run_time) not in _VALIDATORS:
        _VALIDATORS.clear()
        _VALIDATORS[(reports_dir, run_time)] = Validator(Path(reports_dir), setup=False)
    return _VALIDATORS[(reports_dir, run_time)]


def _batch(table: pa.Table, task: PartitionTask, day: str, code: str) -> pd.DataFrame:
    """The frame GX validates: the tick columns (optional ones aside), labels as categoricals (GX
    copies the whole batch for several metrics of each expectation, and categorical copies cost a
    fraction of object strings), and the stock-day's base price on the rows of that stock-day
    (another day's or stock's row has none: outside any limit check)."""
    table = table.drop_columns([f.name for f in TICK_OPTIONAL_FIELDS if f.name in table.column_names])
    encoded = [pc.dictionary_encode(table[c]) if c in CATEGORICAL else table[c] for c in table.column_names]
    df = pa.table(encoded, names=table.column_names).to_pandas()
    days = seoul_day_number(table["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False))
    own = (days == (pd.Timestamp(day) - pd.Timestamp("1970-01-01")).days) & (df["stock_code"] == code)
    df["base_price"] = np.where(own, np.nan if task.base_price is None else task.base_price, np.nan)
    return df


def validate_partition(task: PartitionTask) -> PartitionVerdict:
    """Validate one stock-day file and write its quarantine; the raw file is only read."""
    path, root = Path(task.path), Path(task.root)
    verdict = PartitionVerdict(partition_name(path), path.stat().st_size)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:  # cut short or not Parquet: set aside, left as it is
        verdict.status = "unreadable"
        verdict.critical.append(f"{path}: unreadable Parquet ({exc}); set aside, not read")
        return verdict
    verdict.rows = table.num_rows
    try:
        # a null where the schema allows none is a row's fault: the not-null expectations take it
        check_table(table, TICK_SCHEMA, optional=TICK_OPTIONAL_FIELDS, source=str(path), nulls=False)
    except SchemaMismatch as exc:  # not a tick file vicap can read: the whole partition goes
        verdict.status = "schema_mismatch"
        verdict.critical.append(str(exc))
        _quarantine(root, verdict, table, {i: ["schema mismatch"] for i in range(table.num_rows)})
        return verdict
    day, code = path.parent.name.removeprefix("date="), path.stem
    verdict.gx_run = f"{day}_{code}"  # no "/" in a GX key
    df = _batch(table, task, day, code)
    validator = _worker_validator(task.reports_dir, task.run_time)
    run_time = dt.datetime.fromisoformat(task.run_time)
    reasons, critical = validator.run(TICKS, df, run_name=verdict.gx_run, run_time=run_time)
    if critical:
        verdict.status = "schema_mismatch"
        verdict.critical += [f"{path}: {c}" for c in critical]
        _quarantine(root, verdict, table, {i: critical for i in range(table.num_rows)})
        return verdict
    faults = _row_faults(reasons, table)
    for i, missing in missing_values(table).items():
        faults.setdefault(i, []).extend(missing)
    if any(r in SEQUENCE for rs in reasons.values() for r in rs):  # else no gap and nothing late
        _sequence_findings(verdict, df, [i for i, rs in faults.items() if DUPLICATE in rs])
    _quarantine(root, verdict, table, faults)
    return verdict


def count_on_disk(root: Path, report: ValidationReport) -> dict[str, int]:
    """Rows in (the raw files read), accepted (the view every later stage reads) and quarantined
    (the quarantine files), each counted from the files themselves."""
    read = [p.partition for p in report.partitions if p.status != "unreadable"]
    rows_in = sum(pq.read_metadata(root / "ticks" / p).num_rows for p in read)
    rejected = sorted((root / "quarantine" / "ticks").glob("date=*/*.parquet"))
    quarantined = sum(pq.read_metadata(f).num_rows for f in rejected)
    judged = [p for p in report.partitions if p.status not in EXCLUDED]
    accepted = connect().execute(f"SELECT count(*) FROM {ticks_source(root)}").fetchone()[0] if judged else 0
    return {"rows_in": rows_in, "accepted": int(accepted), "quarantined": quarantined}


def _validate_vi_log(validator: Validator, path: Path, run_time: dt.datetime) -> list[str]:
    """The exchange's VI log: derived by the exchange, so a failing row fails the run."""
    if not path.exists():
        return []
    log = pq.read_table(path)
    extra = [c for c in log.column_names if c not in VI_LOG_SCHEMA.names]
    reasons, critical = validator.run(
        VI_LOG, log.drop_columns(extra).to_pandas(), run_name=VI_LOG, run_time=run_time
    )
    return [f"{path}: {c}" for c in critical] + [
        f"{path}: row {i}: {', '.join(r)}" for i, r in sorted(reasons.items())
    ]


def validate_dataset(
    root: Path,
    reports_dir: Path,
    on_file: Callable[[PartitionVerdict], None] | None = None,
    jobs: int = 1,
    ray_address: str | None = None,
) -> ValidationReport:
    """Validate every tick partition (``jobs`` processes, or Ray tasks on ``ray_address``) and the
    VI log of ``root``; write the verdict beside the data, Data Docs and the readable report under
    ``reports_dir``. The raw files are never written."""
    from validation.report import write_report

    root, reports_dir = Path(root), Path(reports_dir)
    validator = Validator(reports_dir)  # sets up the context (reports_dir/gx) the workers use
    run_time = dt.datetime.now(dt.UTC)
    run_at = run_time.isoformat()
    _VALIDATORS.clear()
    _VALIDATORS[(str(reports_dir), run_at)] = validator
    clear_verdict(root)
    bases = _base_prices(root)
    tasks = [
        PartitionTask(str(root), str(f), str(reports_dir), bases.get((f.parent.name[5:], f.stem)), run_at)
        for f in tick_partitions(root)
    ]
    report = ValidationReport()
    # a worker process costs seconds to start: not worth it for a partition or two
    with TaskRunner(jobs if ray_address else min(jobs, len(tasks) // 2), ray_address) as runner:
        verdicts = runner.map(validate_partition, tasks)  # the workers start on them now
        report.vi_log_failures = _validate_vi_log(validator, root / "vi_log.parquet", run_time)
        for verdict in verdicts:
            report.partitions.append(verdict)
            if on_file:
                on_file(verdict)
    text = json.dumps(report.summary(), indent=1, sort_keys=True, ensure_ascii=False)
    (root / VERDICT_FILE).write_text(text + "\n", encoding="utf-8")
    report.on_disk = count_on_disk(root, report)
    # this run's pages and the index, not every earlier run's again
    results = [_result_id(TICKS, p.gx_run, run_time) for p in report.partitions if p.gx_run]
    if (root / "vi_log.parquet").exists():
        results.append(_result_id(VI_LOG, VI_LOG, run_time))
    report.docs = validator.build_docs(results)
    report.html = write_report(report, root, reports_dir)
    return report


def validate_tables(
    tables: dict[str, pd.DataFrame], suites: dict[str, gx.ExpectationSuite], reports_dir: Path
) -> tuple[list[str], Path]:
    """Run each named suite over its table (derived data: a failure is a bug, not rows to set
    aside); returns the failures and the Data Docs index."""
    validator = Validator(reports_dir, extra=suites)
    failed: list[str] = []
    for name, df in tables.items():
        reasons, critical = validator.run(name, df, run_name=name)
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
