"""1-second event panels around each VI, built in DuckDB over the tick Parquet files.

A panel runs from ``before_s`` seconds before the trigger to ``after_s`` seconds after the
release; a row describes one second ``[second, second + 1s)``: trades in it, and the state (book,
indicative price, program flow, published investor nets) as of its end. A second without events
carries the state forward. Offsets are counted from the trigger (``offset_s``) and from the
release (``since_release_s``, negative before it).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from market.krx.dataset import connect, ticks_source

LEVELS = 10
TRADE = "event_type = 'trade'"
_STATE_COLUMNS = [
    f"{side}_{kind}_{i}"
    for kind in ("price", "volume")
    for side in ("bid", "ask")
    for i in range(1, LEVELS + 1)
]


PANEL_COLUMNS = [
    "event_id", "stock_code", "second", "offset_s", "since_release_s",
    "open", "high", "low", "close", "traded", "vwap", "volume", "buy_volume", "sell_volume", "trade_count",
    "program_net_buy", "institution_net", "foreign_net", "individual_net", "news_flag", "disclosure_flag",
    *_STATE_COLUMNS,
    "vi_status", "indicative_price", "indicative_volume", "spread",
    "imbalance_l1", "imbalance_l5", "imbalance_l10", "program_net_buy_change",
]  # fmt: skip


def _last_state(column: str) -> str:
    # the book as of the end of the second: the last row in it that carries a book snapshot.
    # Rows are ordered by their place in the file (time order, validated): many rows share a
    # timestamp (whole seconds from KIS), and an order by timestamp would pick among them at random.
    return (
        f"arg_max({column}, file_row_number) FILTER (WHERE event_type IN ('book', 'indicative')) AS {column}"
    )


def _imbalance(levels: int) -> str:
    """(bid depth - ask depth) / (bid depth + ask depth) over the best ``levels`` levels."""
    bid = " + ".join(f"bid_volume_{i}" for i in range(1, levels + 1))
    ask = " + ".join(f"ask_volume_{i}" for i in range(1, levels + 1))
    return f"(({bid}) - ({ask})) / nullif(({bid}) + ({ask}), 0)"


def panel_sql(ticks: str, before_s: int, after_s: int) -> str:
    """``ticks``: a FROM expression over tick rows with a ``file_row_number`` column (their order)."""
    state = ",\n        ".join(_last_state(c) for c in _STATE_COLUMNS)
    carried = ",\n        ".join(f"last_value(a.{c} IGNORE NULLS) OVER w AS {c}" for c in _STATE_COLUMNS)
    return f"""
    WITH ev AS (
        SELECT event_id, stock_code, trigger_ts, coalesce(release_ts, trigger_ts) AS release_ts FROM events
    ),
    grid AS (
        SELECT ev.event_id, ev.stock_code, ev.trigger_ts, ev.release_ts, s.second
        FROM ev, LATERAL (SELECT unnest(generate_series(
            date_trunc('second', ev.trigger_ts) - INTERVAL {before_s} SECOND,
            date_trunc('second', ev.release_ts) + INTERVAL {after_s} SECOND,
            INTERVAL 1 SECOND)) AS second) s
    ),
    t AS (
        SELECT ev.event_id, date_trunc('second', k.timestamp) AS second, k.*
        FROM {ticks} k
        JOIN ev ON k.stock_code = ev.stock_code
         AND k.timestamp >= date_trunc('second', ev.trigger_ts) - INTERVAL {before_s} SECOND
         AND k.timestamp < date_trunc('second', ev.release_ts) + INTERVAL {after_s + 1} SECOND
    ),
    a AS (
        SELECT event_id, second,
        arg_min(price, file_row_number) FILTER (WHERE event_type = 'trade') AS open,
        max(price) FILTER (WHERE event_type = 'trade') AS high,
        min(price) FILTER (WHERE event_type = 'trade') AS low,
        arg_max(price, file_row_number) FILTER (WHERE event_type = 'trade') AS close,
        CAST(sum(price * volume) FILTER (WHERE {TRADE}) AS DOUBLE) AS traded_value,
        CAST(coalesce(sum(volume) FILTER (WHERE {TRADE}), 0) AS BIGINT) AS volume,
        CAST(coalesce(sum(volume) FILTER (WHERE {TRADE} AND side = 1), 0) AS BIGINT) AS buy_volume,
        CAST(coalesce(sum(volume) FILTER (WHERE {TRADE} AND side = -1), 0) AS BIGINT) AS sell_volume,
        count(*) FILTER (WHERE event_type = 'trade') AS trade_count,
        arg_max(price, file_row_number) FILTER (WHERE event_type = 'indicative') AS indicative_price,
        arg_max(volume, file_row_number) FILTER (WHERE event_type = 'indicative') AS indicative_volume,
        arg_max(program_net_buy, file_row_number) AS program_net_buy,
        arg_max(institution_net, file_row_number) AS institution_net,
        arg_max(foreign_net, file_row_number) AS foreign_net,
        arg_max(individual_net, file_row_number) AS individual_net,
        bool_or(news_flag) AS news_flag,
        bool_or(disclosure_flag) AS disclosure_flag,
        {state}
        FROM t GROUP BY event_id, second
    ),
    -- the stock's own state each second, from every VI of the stock (a second VI can start inside
    -- this one's window): halted from its trigger second until its release second, which is
    -- the release; a VI the data ends inside is halted to the end
    st AS (
        SELECT g.event_id, g.second,
        bool_or(g.second >= date_trunc('second', v.trigger_ts)
                AND (v.release_ts IS NULL OR g.second < date_trunc('second', v.release_ts))) AS halted,
        bool_or(g.second = date_trunc('second', v.release_ts)) AS released
        FROM grid g JOIN events v ON v.stock_code = g.stock_code
        GROUP BY g.event_id, g.second
    ),
    p AS (
        SELECT g.event_id, g.stock_code, g.second,
        CAST(epoch(g.second) - epoch(date_trunc('second', g.trigger_ts)) AS INTEGER) AS offset_s,
        CAST(epoch(g.second) - epoch(date_trunc('second', g.release_ts)) AS INTEGER) AS since_release_s,
        a.open, a.high, a.low,
        last_value(a.close IGNORE NULLS) OVER w AS close,
        a.close IS NOT NULL AS traded,
        a.traded_value / nullif(a.volume, 0) AS vwap,
        coalesce(a.volume, 0) AS volume, coalesce(a.buy_volume, 0) AS buy_volume,
        coalesce(a.sell_volume, 0) AS sell_volume, coalesce(a.trade_count, 0) AS trade_count,
        st.halted, coalesce(st.released, false) AS released,
        a.indicative_price AS indicative_price_now, a.indicative_volume AS indicative_volume_now,
        last_value(a.program_net_buy IGNORE NULLS) OVER w AS program_net_buy,
        last_value(a.institution_net IGNORE NULLS) OVER w AS institution_net,
        last_value(a.foreign_net IGNORE NULLS) OVER w AS foreign_net,
        last_value(a.individual_net IGNORE NULLS) OVER w AS individual_net,
        coalesce(a.news_flag, false) AS news_flag,
        coalesce(a.disclosure_flag, false) AS disclosure_flag,
        {carried}
        FROM grid g LEFT JOIN a ON a.event_id = g.event_id AND a.second = g.second
        JOIN st ON st.event_id = g.event_id AND st.second = g.second
        WINDOW w AS (PARTITION BY g.event_id ORDER BY g.second
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ),
    -- each halt of the window is a run of its own: its indicative price is carried within it only
    h AS (
        SELECT *, sum(CASE WHEN halted AND NOT coalesce(prev_halted, false) THEN 1 ELSE 0 END)
            OVER (PARTITION BY event_id ORDER BY second) AS halt_run
        FROM (SELECT *, lag(halted) OVER (PARTITION BY event_id ORDER BY second) AS prev_halted FROM p)
    ),
    q AS (
        SELECT *,
        last_value(indicative_price_now IGNORE NULLS) OVER r AS indicative_carried,
        last_value(indicative_volume_now IGNORE NULLS) OVER r AS indicative_volume_carried
        FROM h
        WINDOW r AS (PARTITION BY event_id, halt_run ORDER BY second
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    )
    SELECT * EXCLUDE (halted, released, prev_halted, halt_run, indicative_price_now,
                      indicative_volume_now, indicative_carried, indicative_volume_carried),
        -- 1 while a VI auction of the stock runs, 2 in a release second, 0 otherwise
        CASE WHEN halted THEN 1 WHEN released THEN 2 ELSE 0 END AS vi_status,
        CASE WHEN halted THEN indicative_carried END AS indicative_price,
        CASE WHEN halted THEN indicative_volume_carried END AS indicative_volume,
        -- a call auction's book may cross; a spread is only quoted when it does not
        CASE WHEN bid_price_1 > 0 AND ask_price_1 > bid_price_1 THEN ask_price_1 - bid_price_1
        END AS spread,
        {_imbalance(1)} AS imbalance_l1,
        {_imbalance(5)} AS imbalance_l5,
        {_imbalance(10)} AS imbalance_l10,
        program_net_buy - lag(program_net_buy, 1, program_net_buy)
          OVER (PARTITION BY event_id ORDER BY second) AS program_net_buy_change
    FROM q ORDER BY event_id, second
    """


def _panels(con: duckdb.DuckDBPyConnection, ticks: str, events: pa.Table, before_s: int, after_s: int):
    con.register("events", events)
    panels = con.sql(panel_sql(ticks, before_s, after_s)).to_arrow_table()
    if panels.column_names != PANEL_COLUMNS:
        raise AssertionError(f"panel columns drifted from PANEL_COLUMNS: {panels.column_names}")
    return panels


def build_panels(
    ticks_root: Path, events: pa.Table, before_s: int = 30, after_s: int = 30, threads: int | None = None
) -> pa.Table:
    """The 1-second panels of ``events`` (the events.parquet schema) over the accepted ticks of
    ``ticks_root``."""
    return _panels(connect(threads), ticks_source(ticks_root), events, before_s, after_s)


def panels_from_ticks(
    ticks: pa.Table,
    events: pa.Table,
    before_s: int = 30,
    after_s: int = 30,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The same panels over tick rows held in memory (the live path's buffer), in arrival order;
    ``con``: a connection of :func:`connect` to reuse (the live path's: opening one costs ~20 ms)."""
    con = con or connect(threads=1)
    con.register(
        "buffer", ticks.append_column("file_row_number", pa.array(range(ticks.num_rows), pa.int64()))
    )
    return _panels(con, "buffer", events, before_s, after_s)


def write_panels(ticks_root: Path, events_dir: Path, before_s: int = 30, after_s: int = 30) -> pa.Table:
    import pyarrow.parquet as pq

    events = pq.read_table(events_dir / "events.parquet")
    panels = build_panels(ticks_root, events, before_s, after_s)
    pq.write_table(panels, events_dir / "windows.parquet", compression="zstd")
    return panels
