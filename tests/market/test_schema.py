from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from market.krx.schema import (
    INSTRUMENT_SCHEMA,
    SYNTHETIC_VI_LOG_FIELDS,
    TICK_SCHEMA,
    VI_LOG_SCHEMA,
    SchemaMismatch,
    check_table,
)

SEOUL_TS = dt.datetime(2024, 3, 5, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def vi_log_rows(**overrides) -> dict:
    row = {
        "stock_code": ["005930"],
        "trigger_ts": [SEOUL_TS],
        "release_ts": [None],
        "vi_type": ["static"],
        "direction": [1],
        "ref_price": [70_000],
        "trigger_price": [77_000],
        "auction_price": [None],
    }
    row.update(overrides)
    return row


def test_tick_schema_has_the_contract_columns():
    names = TICK_SCHEMA.names
    assert names[:9] == [
        "timestamp",
        "stock_code",
        "stock_name",
        "market",
        "event_type",
        "price",
        "volume",
        "cum_volume",
        "side",
    ]
    for prefix in ("bid_price", "ask_price", "bid_volume", "ask_volume"):
        assert [n for n in names if n.startswith(prefix + "_")] == [f"{prefix}_{i}" for i in range(1, 11)]
    assert names[-10:] == [
        "program_net_buy",
        "institution_net",
        "foreign_net",
        "individual_net",
        "vi_status",
        "vi_type",
        "vi_reason",
        "news_flag",
        "disclosure_flag",
        "session",
    ]
    assert len(names) == 9 + 40 + 10
    ts = TICK_SCHEMA.field("timestamp").type
    assert (ts.unit, ts.tz) == ("us", "Asia/Seoul")  # never nanoseconds (Feast over DuckDB)
    assert INSTRUMENT_SCHEMA.names == [
        "date",
        "stock_code",
        "stock_name",
        "market",
        "kospi200",
        "kosdaq150",
        "futures_underlying",
        "base_price",
    ]


def test_check_table_accepts_a_matching_table_and_optional_columns():
    table = pa.Table.from_pydict(vi_log_rows(), schema=VI_LOG_SCHEMA)
    check_table(table, VI_LOG_SCHEMA)
    extended = table.append_column(SYNTHETIC_VI_LOG_FIELDS[0], pa.array(["news"]))
    check_table(extended, VI_LOG_SCHEMA, optional=SYNTHETIC_VI_LOG_FIELDS)
    with pytest.raises(SchemaMismatch, match="unexpected column 'cause'"):
        check_table(extended, VI_LOG_SCHEMA)


def test_check_table_names_the_offending_column():
    good = pa.Table.from_pydict(vi_log_rows(), schema=VI_LOG_SCHEMA)
    with pytest.raises(SchemaMismatch, match=r"vi.parquet: missing column 'ref_price' \(int64\)"):
        check_table(good.drop_columns(["ref_price"]), VI_LOG_SCHEMA, source="vi.parquet")
    ns = good.set_column(1, "trigger_ts", good["trigger_ts"].cast(pa.timestamp("ns", tz="Asia/Seoul")))
    with pytest.raises(SchemaMismatch, match="'trigger_ts' has type timestamp\\[ns, tz=Asia/Seoul\\]"):
        check_table(ns, VI_LOG_SCHEMA)
    nulls = pa.Table.from_pydict(
        vi_log_rows(vi_type=[None]), schema=VI_LOG_SCHEMA.set(3, pa.field("vi_type", pa.string()))
    )
    with pytest.raises(SchemaMismatch, match="'vi_type' has 1 nulls"):
        check_table(nulls, VI_LOG_SCHEMA)
