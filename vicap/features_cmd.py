"""``vicap features``: build the offline tables and labels, register them with Feast, load the
online store, read a decision back."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vicap.settings import Settings, get_settings

console = Console()


def _quiet_feast() -> None:
    # Feast 0.67 calls a DuckDB method DuckDB 2.0 deprecates, once per view and call
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"feast\..*")
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")


def run_build(dataset: Path, events: Path, settings: Settings | None = None) -> int:
    from feature_repo.build import build

    settings = settings or get_settings()
    paths = settings.paths
    if not events.exists():
        console.print(f"[red]{events}: no events (run `vicap events {dataset} --out {events.parent}`)[/]")
        return 2
    t0 = time.perf_counter()
    report = build(
        dataset, events, paths.features, paths.labels, paths.reports / "validation", settings.brokerage_rate
    )
    seconds = time.perf_counter() - t0
    console.print(
        f"{report.released} released VIs of {report.events} -> {report.decisions:,} decision rows, "
        f"{report.context_rows} stock-context rows, {report.labels:,} label rows, validated, "
        f"in {seconds:.1f} s\ntables under {paths.features}, labels under {paths.labels}"
    )
    for failure in report.failed:
        console.print(f"[red]failed: {failure}[/]")
    if not report.failed:
        console.print(f"feature tables pass their expectation suites (Data Docs: {report.docs})")
    return 1 if report.failed else 0


def _store(settings: Settings):
    _quiet_feast()
    from feature_repo.store import open_store

    return open_store(settings.paths.feast, settings.online_store.get_secret_value())


def _missing_tables(settings: Settings) -> list[Path]:
    """The offline tables the feature views read that are not there yet."""
    from feature_repo.build import FEAST_TABLES

    return [p for p in (settings.paths.features / f"{t}.parquet" for t in FEAST_TABLES) if not p.exists()]


def _tables_ready(settings: Settings) -> bool:
    missing = _missing_tables(settings)
    for path in missing:
        console.print(f"[red]{path}: no such feature table (run `vicap features build` first)[/]")
    return not missing


def _registry_ready(settings: Settings) -> bool:
    from feature_repo.store import registry_path

    if not registry_path(settings.paths.feast).exists():
        console.print(f"[red]{settings.paths.feast}: no Feast registry (run `vicap features apply` first)[/]")
        return False
    return True


def run_apply(settings: Settings | None = None) -> int:
    from feature_repo.store import apply, registry_path, shown_url

    settings = settings or get_settings()
    if not _tables_ready(settings):
        return 2
    store = _store(settings)
    names = apply(store, settings.paths.features)
    console.print(f"registered {len(names)} Feast objects in {registry_path(settings.paths.feast)}")
    t = Table(title=f"feature views (online store: {shown_url(settings.online_store.get_secret_value())})")
    for col in ("view", "entities", "features", "ttl"):
        t.add_column(col)
    for fv in sorted(store.list_feature_views(), key=lambda v: v.name):
        t.add_row(fv.name, ", ".join(fv.entities), str(len(fv.features)), str(fv.ttl))
    console.print(t)
    return 0


def run_materialize(start: dt.datetime, end: dt.datetime, settings: Settings | None = None) -> int:
    from feature_repo.store import materialize, shown_url

    settings = settings or get_settings()
    if not _tables_ready(settings):
        return 2
    if not _registry_ready(settings):
        return 2
    if end <= start:
        console.print(f"[red]materialize: END {end} is not after START {start}[/]")
        return 2
    t0 = time.perf_counter()
    materialize(_store(settings), start, end)
    where = shown_url(settings.online_store.get_secret_value())
    console.print(f"materialized {start} .. {end} into {where} in {time.perf_counter() - t0:.1f} s")
    return 0


def run_online(
    event_id: str, offset_s: int, settings: Settings | None = None, per_view: int | None = None
) -> dict | None:
    """One decision's features from the online store, printed view by view (the first ``per_view``
    of each, or all); None when the store has none of them."""
    from feature_repo.definitions import SERVICE
    from feature_repo.store import decision_entity, shown_url

    settings = settings or get_settings()
    if not _registry_ready(settings):
        return None
    store = _store(settings)
    service = store.get_feature_service(SERVICE)
    row = store.get_online_features(
        features=service, entity_rows=[decision_entity(event_id, offset_s, event_id.split("-")[0])]
    ).to_dict()
    values = {k: v[0] for k, v in row.items()}
    views = [(p.name, [f.name for f in p.features]) for p in service.feature_view_projections]
    if all(values[n] is None for _, names in views for n in names):
        console.print(
            f"[red]no online features for {event_id} at {offset_s} s after the release in "
            f"{shown_url(settings.online_store.get_secret_value())}: an unknown event, or not "
            f"materialized (vicap features materialize)[/]"
        )
        return None
    t = Table(title=f"online features of {event_id}, {offset_s} s after the release ({SERVICE})")
    for col in ("view", "feature", "value"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for view, names in views:
        for name in names[:per_view]:
            value = values[name]
            t.add_row(view, name, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(t)
    shown = sum(len(names[:per_view]) for _, names in views)
    total = sum(len(names) for _, names in views)
    if shown < total:
        console.print(f"... {total - shown} more: vicap features online {event_id} --offset {offset_s}")
    return values


def stamped_range(features_dir: Path) -> tuple[dt.datetime, dt.datetime]:
    """The first and last event_timestamp of the offline tables (what materialize must cover)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    stamps = [
        pq.read_table(p, columns=["event_timestamp"])["event_timestamp"]
        for p in features_dir.glob("*.parquet")
    ]
    lows = [pc.min(s).as_py() for s in stamps if len(s)]
    highs = [pc.max(s).as_py() for s in stamps if len(s)]
    return min(lows), max(highs)


def run_demo_features(dataset: Path, settings: Settings) -> int:
    """Build, apply, materialize, and read one decision back from the online store."""
    import pyarrow.parquet as pq

    status = run_build(dataset, settings.paths.events, settings)
    if status:
        return status
    run_apply(settings)
    start, end = stamped_range(settings.paths.features)
    run_materialize(start, end + dt.timedelta(seconds=1), settings)
    decisions = pq.read_table(settings.paths.features / "vi_decision_features.parquet", columns=["event_id"])
    if not decisions.num_rows:
        console.print("[red]no released VI to read back[/]")
        return 1
    values = run_online(decisions["event_id"][0].as_py(), 3, settings, per_view=4)
    if values is None:
        return 1
    # each view answered: the decision's own row, its event's row and its stock's context
    found = values["post_offset_s"] == 3.0 and values["trig_direction"] in (-1.0, 1.0)
    return 0 if found and values["ctx_prev_close_log"] is not None else 1


def feature_list_markdown() -> str:
    """The documented feature list (feature_repo/FEATURES.md is this text)."""
    from feature_repo.context import STOCK_CONTEXT
    from feature_repo.features import (
        EVENT_FEATURES,
        LIVE_FEED_LACKS,
        POST_RELEASE,
        SEQUENCE_CHANNELS,
        SEQUENCE_LENGTH,
    )

    views = {
        "vi_pre_trigger": [f for f in EVENT_FEATURES if f.group == "pre_trigger"],
        "vi_at_trigger": [f for f in EVENT_FEATURES if f.group == "at_trigger"],
        "vi_auction": [f for f in EVENT_FEATURES if f.group == "auction"],
        "vi_post_release": POST_RELEASE,
        "stock_context": STOCK_CONTEXT,
    }
    total = sum(len(v) for v in views.values())
    lines = [
        "# vicap features",
        "",
        "Generated by `vicap features list` from the specs in `feature_repo/features/` (one module a group) "
        "and `feature_repo/context.py`; a test keeps this file current.",
        "",
        f"{total} tabular features (feature service `vi_rebound_v1`) and {len(SEQUENCE_CHANNELS)} "
        f"sequence channels of {SEQUENCE_LENGTH} seconds (`vi_sequence_v1`).",
        "",
        "Sources: the synthetic market supplies every feature; vendor files supply a feature that "
        f"reads {', '.join(sorted(LIVE_FEED_LACKS))} only where their layout maps the column; the "
        "live KIS feed supplies none of those. `vi_rebound_live_v1` is `vi_rebound_v1` without "
        f"them ({sum(f.live for v in views.values() for f in v)} features): a model meant to trade "
        "live is trained only on what it will see.",
    ]
    for view, specs in views.items():
        lines += [
            "",
            f"## {view} ({len(specs)})",
            "",
            "| feature | meaning | nulls | range | synthetic | vendor | KIS live |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in specs:
            bounds = (
                ""
                if f.lo is None and f.hi is None
                else f"[{'' if f.lo is None else f'{f.lo:.4g}'}, {'' if f.hi is None else f'{f.hi:.4g}'}]"
            )
            vendor = f"if mapped ({', '.join(sorted(f.needs))})" if f.needs else "yes"
            lines.append(
                f"| `{f.name}` | {f.doc} | {'yes' if f.nullable else 'no'} | {bounds} | yes | {vendor} "
                f"| {'yes' if f.live else 'no'} |"
            )
    lines += [
        "",
        f"## vi_sequence ({len(SEQUENCE_CHANNELS)} arrays of {SEQUENCE_LENGTH})",
        "",
        "| channel | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {d} |" for n, d in SEQUENCE_CHANNELS.items()]
    return "\n".join(lines) + "\n"
