"""1-second event panels: coverage, sums that tie back to the ticks, phases, no lookahead."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from market.events.panels import build_panels
from market.events.table import events_table


@pytest.fixture(scope="module")
def events(dataset_events):
    return dataset_events


@pytest.fixture(scope="module")
def panels(dataset, events):
    return build_panels(dataset, events).to_pandas()


def test_each_panel_covers_30s_before_to_30s_after(events, panels):
    ev = events.to_pandas().set_index("event_id")
    sizes = panels.groupby("event_id").size()
    assert set(sizes.index) == set(ev.index)
    for eid, n in sizes.items():
        e = ev.loc[eid]
        span = int((e.release_ts.floor("s") - e.trigger_ts.floor("s")).total_seconds())
        assert n == span + 61
    assert panels.offset_s.min() == -30 and (panels.groupby("event_id").since_release_s.max() == 30).all()


def test_volumes_tie_back_to_the_ticks(dataset, events, panels):
    e = events.to_pandas().iloc[0]
    day = e.trigger_ts.date().isoformat()
    t = pq.read_table(dataset / "ticks" / f"date={day}" / f"{e.stock_code}.parquet").to_pandas()
    p = panels[panels.event_id == e.event_id]
    lo, hi = p.second.min(), p.second.max() + np.timedelta64(1, "s")
    window = t[(t.timestamp >= lo) & (t.timestamp < hi) & (t.event_type == "trade")]
    assert p.volume.sum() == window.volume.sum()
    assert p.buy_volume.sum() == window[window.side == 1].volume.sum()
    assert p.trade_count.sum() == len(window)
    released = p[p.vi_status == 2]
    assert len(released) == 1 and released.since_release_s.iloc[0] == 0
    if not np.isnan(e.auction_price):
        assert released.open.iloc[0] == e.auction_price  # the uncross opens the release second


def test_auction_seconds_trade_nothing_and_show_the_indicative_price(events, panels):
    # a trigger's own second may hold in-band fills from before the trigger instant: the panel's
    # VI's, and that of a VI set off again within its panel's 30 s after the release
    ev = events.to_pandas()
    triggers = pd.MultiIndex.from_arrays([ev.stock_code, ev.trigger_ts.dt.floor("s")])
    in_trigger_second = pd.MultiIndex.from_arrays([panels.stock_code, panels.second]).isin(triggers)
    auction = panels[(panels.vi_status == 1) & (panels.offset_s >= 1) & ~in_trigger_second]
    assert len(auction) > 100 and (auction.volume == 0).all()
    assert auction.indicative_price.notna().mean() > 0.9
    assert panels[panels.vi_status == 0].indicative_price.isna().all()


def test_panel_rows_use_no_later_data(dataset, events, tmp_path):
    """Cutting the ticks after a second leaves every row up to that second unchanged."""
    e = events.slice(0, 1)
    full = build_panels(dataset, e).to_pandas()
    cut_second = full.second.iloc[40]
    shutil.copytree(dataset, tmp_path / "raw")
    day = e["trigger_ts"][0].as_py().date().isoformat()
    f = tmp_path / "raw" / "ticks" / f"date={day}" / f"{e['stock_code'][0].as_py()}.parquet"
    table = pq.read_table(f)
    limit = pa.scalar(
        cut_second.to_pydatetime() + dt.timedelta(seconds=1), table.schema.field("timestamp").type
    )
    pq.write_table(table.filter(pc.less(table["timestamp"], limit)), f)
    cut = build_panels(tmp_path / "raw", e).to_pandas()
    upto = full.second <= cut_second
    assert full[upto].reset_index(drop=True).equals(cut[cut.second <= cut_second].reset_index(drop=True))


def test_events_and_panels_pass_their_suites_and_a_broken_panel_fails(events, panels, tmp_path):
    from validation.runner import validate_events

    pq.write_table(events, tmp_path / "events.parquet")
    pq.write_table(pa.Table.from_pandas(panels, preserve_index=False), tmp_path / "windows.parquet")
    assert validate_events(tmp_path, tmp_path / "reports") == []
    assert (tmp_path / "reports" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()
    df = panels.copy()
    traded = df.index[df["traded"]][:3]
    df.loc[traded, "high"] = df.loc[traded, "low"] - 5  # a bar whose high is below its low
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "windows.parquet")
    pq.write_table(pa.concat_tables([events, events.slice(0, 1)]), tmp_path / "events.parquet")
    failed = validate_events(tmp_path, tmp_path / "reports")
    assert "events: expect_column_values_to_be_unique(event_id) fails on 2 rows" in failed
    assert "windows: expect_krx_panel_bar_consistent fails on 3 rows" in failed


def _ticks(rows: list[tuple[str, str, int, int]]) -> pa.Table:
    """Tick rows (time on 2024-03-04, event type, price, volume) of stock 123450."""
    from market.krx.schema import TICK_SCHEMA

    day = dt.datetime(2024, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    out = []
    for time, kind, price, volume in rows:
        row = dict.fromkeys(TICK_SCHEMA.names, 0)
        h, m, s = (int(x) for x in time.split(":"))
        row |= {
            "timestamp": day.replace(hour=h, minute=m, second=s),
            "stock_code": "123450", "stock_name": "비캡", "market": "KOSDAQ", "event_type": kind,
            "price": price, "volume": volume, "side": 0, "vi_type": "none",
            "vi_reason": "", "news_flag": False, "disclosure_flag": False, "session": "continuous",
        }  # fmt: skip
        out.append(row)
    return pa.Table.from_pylist(out, schema=TICK_SCHEMA)


def _events(spans: list[tuple[str, str | None]]) -> pa.Table:
    from market.events.detector import VIEvent
    from market.krx import at_seoul

    day = dt.date(2024, 3, 4)
    vis = []
    for trigger, release in spans:
        vi = VIEvent("123450", at_seoul(day, dt.time.fromisoformat(trigger)), "static", 1, 1000, 1000, 1100)
        vi.release_ts = at_seoul(day, dt.time.fromisoformat(release)) if release else None
        vis.append(vi)
    return events_table(vis)


def test_a_second_vi_inside_the_first_ones_window_shows_its_own_halt():
    """VI 1 10:00:00-10:02:00, VI 2 from 10:02:20 (its expected price 1,200): VI 1's panel shows
    VI 2's halt and its indicative price, not VI 1's, after VI 1's release."""
    from market.events.panels import panels_from_ticks

    ticks = _ticks(
        [("09:59:50", "trade", 1000, 5), ("10:00:10", "indicative", 1100, 50),
         ("10:02:00", "trade", 1100, 40), ("10:02:10", "trade", 1150, 5),
         ("10:02:30", "indicative", 1200, 60), ("10:04:20", "trade", 1200, 70)]
    )  # fmt: skip
    panels = panels_from_ticks(ticks, _events([("10:00:00", "10:02:00"), ("10:02:20", "10:04:20")]), 30, 30)
    first = (
        panels.to_pandas().groupby("event_id").get_group(panels["event_id"][0].as_py()).set_index("offset_s")
    )
    assert first.loc[119, "vi_status"] == 1 and first.loc[119, "indicative_price"] == 1100
    assert first.loc[120, "vi_status"] == 2  # VI 1's release second
    assert first.loc[125, "vi_status"] == 0 and np.isnan(first.loc[125, "indicative_price"])
    # VI 2 from 10:02:20: halted; before its first indicative row (10:02:30) no price is shown
    assert (first.loc[140:150, "vi_status"] == 1).all()
    assert first.loc[140:149, "indicative_price"].isna().all() and first.loc[150, "indicative_price"] == 1200


def test_a_vi_the_data_ends_inside_is_never_marked_released():
    from market.events.panels import panels_from_ticks

    ticks = _ticks([("10:00:00", "trade", 1000, 5), ("10:00:20", "indicative", 1100, 5)])
    panels = panels_from_ticks(ticks, _events([("10:00:10", None)]), 30, 30).to_pandas()
    assert 2 not in set(panels["vi_status"]) and (panels.loc[panels.offset_s >= 0, "vi_status"] == 1).all()
