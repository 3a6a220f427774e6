"""1-second event panels: coverage, sums that tie back to the ticks, phases, no lookahead."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from market.events.panels import build_panels
from market.events.table import detect, events_table


@pytest.fixture(scope="module")
def events(dataset):
    return events_table(detect(dataset))


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


def test_auction_seconds_trade_nothing_and_show_the_indicative_price(panels):
    # the trigger's own second may hold in-band fills from before the trigger instant
    auction = panels[(panels.vi_status == 1) & (panels.offset_s >= 1)]
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
