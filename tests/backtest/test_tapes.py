"""Tapes three ways, held equal: a stock-day read in one batch (``tape_from_table``), grown a row at
a time as the live feed delivers it (``LiveTape``), and opened from the memory-mapped cache
(``TapeStore``); and the two clocks every row carries (``backtest.clock.two_clocks``)."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.clock import FeedClock, two_clocks
from backtest.tape import (
    COLUMNS,
    META_FIELDS,
    RECV_COLUMN,
    ROW_FIELDS,
    LiveTape,
    Tape,
    load_tape,
    tape_from_table,
)
from backtest.tapestore import TapeStore, default_cache
from market.events.detector import StockDay
from market.krx import US_PER_SECOND
from tests.backtest.conftest import DAY, T0, row

STOCK_DAY = StockDay(DAY, "KOSPI", False, 10_000)

# --- rows a market may send, drawn by hypothesis ---

# (session, vi_status) of each stretch of the day: a stretch's rows share them, so a book shown
# early in a stretch is still shown later in it and phases change only between stretches
SITUATIONS = [
    ("opening_auction", 0),
    ("continuous", 0),
    ("continuous", 1),  # a VI's call auction
    ("continuous", 2),  # the first row after a VI's release
    ("closing_auction", 0),
    ("post_close", 0),
]
# a few books drawn again and again, so identical consecutive books (stored once) come up often
POOL = [
    ([(10_000, 100)], [(10_010, 200)]),
    ([(10_000, 100), (9_990, 50)], [(10_010, 200), (10_020, 70)]),
    ([(9_990, 300)], []),  # one side only still is a book
]


@st.composite
def levels(draw, best: int, step: int) -> list[tuple[int, int]]:
    n = draw(st.integers(1, 10))
    return [(best + step * i, draw(st.integers(1, 500))) for i in range(n)]


@st.composite
def books(draw) -> tuple[list, list]:
    """1-10 levels a side (or one side empty), drawn or taken from the pool."""
    if draw(st.booleans()):
        return draw(st.sampled_from(POOL))
    bid = draw(st.integers(990, 1_010)) * 10
    bids = draw(levels(bid, -10)) if draw(st.integers(0, 5)) else []
    asks = draw(levels(bid + 10, 10)) if draw(st.integers(0, 5)) or not bids else []
    return bids, asks


@st.composite
def tick(draw, session: str, vi_status: int) -> dict:
    """One row of a stretch: trades (an uncross print in an auction), books, indicative prices in
    auctions, status rows; any of them with a book or none."""
    auction = session in ("opening_auction", "closing_auction") or vi_status == 1
    kinds = ["book", "status", "trade"] + (["indicative"] if auction else [])
    kind = draw(st.sampled_from(kinds))
    price = draw(st.integers(990, 1_010)) * 10
    side = 0 if auction else draw(st.sampled_from([1, -1]))
    if kind == "indicative":
        price = draw(st.sampled_from([0, price]))  # an auction may show no indicative price yet
    elif kind != "trade":
        price, side = 0, 0
    # book rows mostly bring a book (not always: a feed may send an empty one); other rows seldom do
    brings = draw(st.integers(0, 9)) > 0 if kind in ("book", "indicative") else draw(st.integers(0, 4)) == 0
    book = draw(books()) if brings else ([], [])
    r = row(0, kind, price, draw(st.integers(0, 1_000)), side, *book, vi_status=vi_status, session=session)
    return r | {
        "cum_volume": draw(st.integers(0, 10**9)),
        "program_net_buy": draw(st.integers(-(10**7), 10**7)),
    }


@st.composite
def ticks(draw, whole_seconds: bool) -> list[dict]:
    """Stretches of rows with non-decreasing exchange stamps (exact µs, or whole seconds) and
    receive times where the source had them (early, late, or none)."""
    out, stamp = [], T0
    for _ in range(draw(st.integers(1, 6))):
        session, vi_status = draw(st.sampled_from(SITUATIONS))
        for _ in range(draw(st.integers(1, 8))):
            r = draw(tick(session, vi_status))
            stamp += (
                draw(st.integers(0, 2)) * US_PER_SECOND if whole_seconds else draw(st.integers(0, 3_000_000))
            )
            late = draw(st.one_of(st.none(), st.integers(-50_000, 2_500_000)))
            out.append(r | {"timestamp": stamp, RECV_COLUMN: None if late is None else stamp + late})
    return out


def batch(rows: list[dict], clock: FeedClock, with_recv: bool) -> Tape:
    """The rows as a tick file would hold them, read in one batch."""
    names = [*COLUMNS, RECV_COLUMN] if with_recv else COLUMNS
    stamp = pa.timestamp("us", tz="Asia/Seoul")
    table = pa.table(
        {c: pa.array([r[c] for r in rows], stamp if c in ("timestamp", RECV_COLUMN) else None) for c in names}
    )
    return tape_from_table(table, "005930", STOCK_DAY, clock)


def grown(rows: list[dict], clock: FeedClock, resolution: int) -> Tape:
    # a tiny capacity, so the arrays and the books grow while the rows arrive
    live = LiveTape("005930", STOCK_DAY, clock, resolution=resolution, capacity=2)
    for r in rows:
        live.append(r)
    return live.tape()


def assert_same_rows(a: Tape, b: Tape) -> None:
    for f in ROW_FIELDS:  # both clocks, kind, price, phase, last_price, static_ref, mark, book, shown...
        assert getattr(a, f).tolist() == getattr(b, f).tolist(), f
    has = a.book >= 0
    # the books the rows point at, not only the pointers
    assert np.array_equal(a.books[a.book[has]], b.books[b.book[has]])


@settings(max_examples=150, deadline=None)
@given(rows=ticks(whole_seconds=False), latency=st.integers(0, 50_000), with_recv=st.booleans())
def test_a_live_tape_grown_row_by_row_equals_the_batch_read_of_exact_stamps(rows, latency, with_recv):
    if not with_recv:
        rows = [r | {RECV_COLUMN: None} for r in rows]
    clock = FeedClock(feed_latency_us=latency, stamp_us=1)
    assert_same_rows(batch(rows, clock, with_recv), grown(rows, clock, 1))


@settings(max_examples=150, deadline=None)
@given(
    rows=ticks(whole_seconds=True),
    latency=st.integers(0, 50_000),
    stamp_us=st.sampled_from([0, US_PER_SECOND]),  # 0: the batch finds the whole seconds itself
    with_recv=st.booleans(),
)
def test_a_live_tape_grown_row_by_row_equals_the_batch_read_of_whole_second_stamps(
    rows, latency, stamp_us, with_recv
):
    if not with_recv:
        rows = [r | {RECV_COLUMN: None} for r in rows]
    clock = FeedClock(feed_latency_us=latency, stamp_us=stamp_us)
    assert_same_rows(batch(rows, clock, with_recv), grown(rows, clock, US_PER_SECOND))


# --- the cache ---


def listing(root) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def assert_same_tape(a: Tape, b: Tape) -> None:
    for f in META_FIELDS:
        assert getattr(a, f) == getattr(b, f), f
    for f in ROW_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert np.array_equal(a.books, b.books)


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory) -> TapeStore:
    return TapeStore(dataset, cache_dir=tmp_path_factory.mktemp("tapes"))


def stock_days(store: TapeStore) -> list:
    return sorted(store.days)


def test_a_cached_tape_equals_the_tape_read_from_parquet_field_by_field(store, dataset):
    for code, day in stock_days(store):
        assert_same_tape(store(code, day), load_tape(dataset, code, store.stock_day(code, day)))


def test_a_cached_window_equals_the_window_of_the_whole_tape(store, dataset):
    rng = random.Random(29)
    for code, day in stock_days(store)[:4]:
        tape = load_tape(dataset, code, store.stock_day(code, day))
        first, last = int(tape.ts[0]), int(tape.ts[-1])
        s = US_PER_SECOND
        spans = [
            (first - 3600 * s, first - s),  # wholly before the day
            (first - 600 * s, first + 600 * s),  # over its first row
            (first, first),
            (first // s * s, first // s * s + s - 1),  # the first row's second, to its last µs
            (last - 600 * s, last),
            (last, last + 600 * s),  # over its last row
            (last + s, last + 3600 * s),  # wholly after it
            (int(tape.ts[len(tape) // 2]), int(tape.ts[len(tape) // 2])),  # one instant with rows
        ]
        spans += [(a, a + rng.randrange(600 * s)) for a in (rng.randrange(first, last) for _ in range(20))]
        for a, b in spans:
            assert_same_tape(store.window(code, day, a, b), tape.window(a, b))


# the session market's stamps are exact: read as whole seconds, every exchange time moves
OTHER_CLOCK = FeedClock(feed_latency_us=20_000, stamp_us=US_PER_SECOND)


def test_a_changed_feed_clock_rebuilds_and_a_second_open_does_not(dataset, tmp_path):
    code, day = stock_days(TapeStore(dataset, cache_dir=tmp_path))[0]
    first = TapeStore(dataset, cache_dir=tmp_path)
    first(code, day)
    assert first.built == 1
    again = TapeStore(dataset, cache_dir=tmp_path)
    before = np.array(again(code, day).ts)
    assert again.built == 0
    changed = TapeStore(dataset, clock=OTHER_CLOCK, cache_dir=tmp_path)
    tape = changed(code, day)
    assert changed.built == 1
    # the rebuilt file holds the new clock's times, not the old file's
    assert not np.array_equal(tape.ts, before)
    assert_same_tape(tape, load_tape(dataset, code, changed.stock_day(code, day), OTHER_CLOCK))
    reopened = TapeStore(dataset, clock=OTHER_CLOCK, cache_dir=tmp_path)
    reopened(code, day)
    assert reopened.built == 0


def test_a_rebuild_cut_short_before_its_meta_is_written_is_rebuilt_not_trusted(
    dataset, tmp_path, monkeypatch
):
    code, day = stock_days(TapeStore(dataset, cache_dir=tmp_path))[0]
    TapeStore(dataset, cache_dir=tmp_path)(code, day)  # built for the default clock

    def power_cut(*args, **kwargs):
        raise OSError("power cut")

    # a rebuild for another clock dies after its data file is in place, before its meta is written
    monkeypatch.setattr(Path, "write_text", power_cut)
    with pytest.raises(OSError, match="power cut"):
        TapeStore(dataset, clock=OTHER_CLOCK, cache_dir=tmp_path)(code, day)
    monkeypatch.undo()
    # the old meta must not vouch for the new data: the default clock's tape, not the other's
    store = TapeStore(dataset, cache_dir=tmp_path)
    assert_same_tape(store(code, day), load_tape(dataset, code, store.stock_day(code, day)))


def test_the_cache_never_writes_into_the_dataset_root(dataset, tmp_path):
    before = listing(dataset)
    store = TapeStore(dataset, cache_dir=tmp_path / "cache")
    for code, day in stock_days(store):
        store(code, day)
    assert store.built == len(store.days)
    assert listing(dataset) == before
    # nor does the default cache: it sits beside the dataset
    assert not default_cache(dataset).is_relative_to(dataset.resolve())


def open_files() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files in /proc")
@pytest.mark.parametrize("keep", [0, 2])
def test_a_store_keeps_no_more_than_keep_stock_days_mapped(dataset, tmp_path, keep):
    # each mapping holds a file descriptor: a backtest over many stock-days must not run out of them
    keys = stock_days(TapeStore(dataset, cache_dir=tmp_path))[:5]  # more than ``keep``
    for code, day in keys:
        TapeStore(dataset, cache_dir=tmp_path).open(code, day)  # built, and unmapped again
    gc.collect()
    before = open_files()
    store = TapeStore(dataset, cache_dir=tmp_path, keep=keep)
    for code, day in keys:
        tape = load_tape(dataset, code, store.stock_day(code, day))
        a = int(tape.ts[len(tape) // 2])
        b = a + 60 * US_PER_SECOND
        assert_same_tape(store.window(code, day, a, b), tape.window(a, b))
    gc.collect()
    assert store.built == 0 and open_files() - before <= keep


# --- two clocks ---

S = T0 + 7 * US_PER_SECOND  # a whole second
KIS = FeedClock(feed_latency_us=20_000, stamp_us=US_PER_SECOND)


def clocks(stamps: list[int], received: list[int | None], clock: FeedClock = KIS):
    recv = np.array([-1 if r is None else r for r in received], np.int64)
    exch, local = two_clocks(np.array(stamps, np.int64), recv, clock)
    return exch.tolist(), local.tolist()


def test_a_receive_time_inside_the_second_gives_the_exchange_time_less_the_feed_latency():
    assert clocks([S], [S + 620_000]) == ([S + 600_000], [S + 620_000])


def test_a_whole_second_stamp_clamps_the_exchange_time_into_its_second():
    late, early = S + 1_500_000, S + 5_000  # received after the second ended; before the latency passed
    assert clocks([S, S + US_PER_SECOND], [late, early + US_PER_SECOND]) == (
        [S + US_PER_SECOND - 1, S + US_PER_SECOND],
        [late, late],  # a socket delivers in order: nothing is seen before what came ahead of it
    )


def test_a_row_without_a_receive_time_is_seen_at_the_end_of_its_second_plus_the_feed_latency():
    end = S + US_PER_SECOND - 1
    assert clocks([S, S], [None, None]) == ([end, end], [end + 20_000, end + 20_000])
    no_column = two_clocks(np.array([S, S]), None, KIS)  # a source that never records receive times
    assert [v.tolist() for v in no_column] == [[end, end], [end + 20_000, end + 20_000]]
    exact = FeedClock(feed_latency_us=20_000, stamp_us=1)
    assert clocks([S + 123], [None], exact) == ([S + 123], [S + 20_123])


def test_a_receive_time_before_its_stamp_never_shows_the_row_before_it_happened():
    exch, local = clocks([S], [S - 300_000])
    assert exch == [S] and local == [S]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.one_of(st.none(), st.integers(-2_000_000, 3_000_000))),
        min_size=1,
        max_size=40,
    ),
    latency=st.integers(0, 100_000),
)
def test_two_clocks_of_whole_second_stamps_hold_their_promises(steps, latency):
    stamps, received, t = [], [], S
    for gap, late in steps:
        t += gap * US_PER_SECOND
        stamps.append(t)
        received.append(None if late is None else t + late)
    clock = FeedClock(feed_latency_us=latency, stamp_us=US_PER_SECOND)
    exch, local = (np.array(v) for v in clocks(stamps, received, clock))
    stamps, end = np.array(stamps), np.array(stamps) + US_PER_SECOND - 1
    assert np.all((stamps <= exch) & (exch <= end))  # inside [S, S + 1 s)
    assert np.all(np.diff(exch) >= 0) and np.all(np.diff(local) >= 0)
    assert np.all(local >= exch)  # never seen before it happened
    unknown = np.array([r is None for r in received])
    assert np.all(local[unknown] >= end[unknown] + latency)
    with_recv = np.array([-1 if r is None else r for r in received])
    assert np.all(local[~unknown] >= with_recv[~unknown])  # never seen before it was received
