"""Arrow schemas of vicap's data contracts (architecture.md) and a checker that names what is wrong.

Timestamps are microseconds in Asia/Seoul: Feast over DuckDB 2.0 cannot cast nanosecond
tz-aware timestamps, so nothing in vicap writes nanoseconds.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="Asia/Seoul")
BOOK_LEVELS = 10

EVENT_TYPES = ("trade", "book", "indicative", "status")
# KIS vi_kind_code 1/2/3 for static, dynamic, both; "unknown": a VI whose type the data cannot decide
VI_TYPES = ("none", "static", "dynamic", "both", "unknown")
EVENT_VI_TYPES = VI_TYPES[1:]  # a detected VI has a type, or says it is unknown
LOGGED_VI_TYPES = ("static", "dynamic", "both")  # the exchange's own record always has one
VI_STATUS_NORMAL, VI_STATUS_AUCTION, VI_STATUS_RELEASED = 0, 1, 2
# The aggressor side of a trade. Single-price (call-auction) prints have no aggressor; vendor files
# often carry no side at all, which is its own value: an unknown side is never an auction print.
SIDE_BUY, SIDE_SELL, SIDE_AUCTION, SIDE_UNKNOWN = 1, -1, 0, 2
SIDES = {"buy": SIDE_BUY, "sell": SIDE_SELL, "auction": SIDE_AUCTION, "unknown": SIDE_UNKNOWN}


def _book_fields() -> list[pa.Field]:
    fields = []
    for prefix, typ in (
        ("bid_price", pa.int64()),
        ("ask_price", pa.int64()),
        ("bid_volume", pa.int64()),
        ("ask_volume", pa.int64()),
    ):
        fields += [pa.field(f"{prefix}_{i}", typ, nullable=False) for i in range(1, BOOK_LEVELS + 1)]
    return fields


TICK_SCHEMA = pa.schema(
    [
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("stock_code", pa.string(), nullable=False),  # 6-digit 단축코드
        pa.field("stock_name", pa.string(), nullable=False),
        pa.field("market", pa.string(), nullable=False),  # KOSPI | KOSDAQ
        pa.field("event_type", pa.string(), nullable=False),  # trade | book | indicative | status
        pa.field("price", pa.int64(), nullable=False),  # KRW; trade price, indicative price, or 0
        pa.field("volume", pa.int64(), nullable=False),  # 체결량, or indicative quantity
        pa.field("cum_volume", pa.int64(), nullable=False),  # 누적거래량 today
        pa.field("side", pa.int8(), nullable=False),  # 1 buy, -1 sell aggressor, 0 auction, 2 unknown
        *_book_fields(),  # 10-level 호가 (0 where a level is empty)
        pa.field("program_net_buy", pa.int64(), nullable=False),  # 프로그램 순매수, cumulative shares
        pa.field("institution_net", pa.int64(), nullable=False),  # 기관, as last published
        pa.field("foreign_net", pa.int64(), nullable=False),  # 외국인
        pa.field("individual_net", pa.int64(), nullable=False),  # 개인
        pa.field("vi_status", pa.int8(), nullable=False),  # 0 normal, 1 VI auction, 2 release instant
        pa.field("vi_type", pa.string(), nullable=False),  # none | static | dynamic | both | unknown
        pa.field("vi_reason", pa.string(), nullable=False),
        pa.field("news_flag", pa.bool_(), nullable=False),
        pa.field("disclosure_flag", pa.bool_(), nullable=False),  # 공시
        pa.field("session", pa.string(), nullable=False),  # market.krx.sessions.SESSIONS, by the clock
    ]
)

# Optional tick columns: when a KIS recording's frame was received (the exchange's own time is
# ``timestamp``); sources without it leave the column out.
RECV_TS_FIELD = pa.field("recv_ts", TIMESTAMP, nullable=True)
TICK_OPTIONAL_FIELDS = (RECV_TS_FIELD,)

INSTRUMENT_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("stock_code", pa.string(), nullable=False),
        pa.field("stock_name", pa.string(), nullable=False),
        pa.field("market", pa.string(), nullable=False),
        pa.field("kospi200", pa.bool_(), nullable=False),
        # index constituents and single-stock-futures underlyings: a 1% closing band on expiry days
        pa.field("kosdaq150", pa.bool_(), nullable=False),
        pa.field("futures_underlying", pa.bool_(), nullable=False),  # 주식선물 기초자산
        pa.field("base_price", pa.int64(), nullable=False),  # 기준가, normally the previous close
    ]
)

VI_LOG_SCHEMA = pa.schema(
    [
        pa.field("stock_code", pa.string(), nullable=False),
        pa.field("trigger_ts", TIMESTAMP, nullable=False),  # 발동 시각
        pa.field("release_ts", TIMESTAMP, nullable=True),  # 해제 시각 (null if the day ended first)
        pa.field("vi_type", pa.string(), nullable=False),  # static | dynamic | both
        pa.field("direction", pa.int8(), nullable=False),  # +1 up, -1 down
        pa.field("ref_price", pa.int64(), nullable=False),  # 기준가격 of the band that fired
        pa.field("trigger_price", pa.int64(), nullable=False),  # 발동가격 (would-be execution price)
        pa.field("auction_price", pa.int64(), nullable=True),  # 단일가 체결가 (null: nothing crossed)
    ]
)

# Columns only synthetic data carries: the latent truth an oracle may use, never a model.
SYNTHETIC_VI_LOG_FIELDS = (
    pa.field("cause", pa.string(), nullable=True),  # news | disclosure | program | panic
    pa.field("latent_drift", pa.float64(), nullable=True),
)


class SchemaMismatch(ValueError):
    """A table does not match a vicap schema; the message names the column."""


def check_table(
    table: pa.Table,
    schema: pa.Schema,
    *,
    optional: tuple[pa.Field, ...] = (),
    source: str = "table",
    nulls: bool = True,
) -> None:
    """Raise :class:`SchemaMismatch` naming the first missing, extra or mistyped column of ``table``
    (from ``source``, a file name in messages), or (``nulls``) a null in a non-nullable column."""
    allowed = {f.name: f for f in (*schema, *optional)}
    for field in schema:
        if field.name not in table.column_names:
            raise SchemaMismatch(f"{source}: missing column {field.name!r} ({field.type})")
    for name in table.column_names:
        if name not in allowed:
            raise SchemaMismatch(f"{source}: unexpected column {name!r}")
        want = allowed[name]
        got = table.schema.field(name).type
        if got != want.type:
            raise SchemaMismatch(f"{source}: column {name!r} has type {got}, expected {want.type}")
        if nulls and not want.nullable and table.column(name).null_count:
            raise SchemaMismatch(
                f"{source}: column {name!r} has {table.column(name).null_count} nulls but may have none"
            )
