"""Matching-engine throughput: order events per second on one core, beside a plain-Python
price-time book fed the same events in the same run."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np

from bench.common import publish
from bench.reference_book import ReferenceBook
from market import krx
from market.exchange import kernels as k
from market.exchange.engine import Exchange, ExchangeConfig, Instrument
from market.exchange.random_flow import random_order_stream

DAY = dt.date(2024, 3, 5)
STOCK = Instrument("005930", "삼성전자", "KOSPI", kospi200=True)
BASE = 71_000


def _exchange(config: ExchangeConfig, capacity: int) -> Exchange:
    return Exchange(STOCK, DAY, BASE, config=config, order_capacity=capacity)


def _stream(n: int, seed: int):
    ex = _exchange(ExchangeConfig(), 16)
    start = krx.at_seoul(DAY, dt.time(9, 0, 31))  # after the opening call's random end
    end = krx.at_seoul(DAY, dt.time(15, 19))
    return random_order_stream(
        np.random.default_rng(seed), ex.grid, n, start, end, mid_index=int(np.searchsorted(ex.grid, BASE))
    )


def run_engine(stream, config: ExchangeConfig) -> tuple[float, Exchange]:
    ex = _exchange(config, len(stream) + 16)
    ex.advance(int(stream.ts[0]) - 1)  # the opening call ends outside the timed part
    t0 = time.perf_counter()
    ex.process(stream.ts, stream.kind, stream.side, stream.price, stream.qty, stream.target)
    return time.perf_counter() - t0, ex


def run_reference(stream) -> tuple[float, ReferenceBook]:
    book = ReferenceBook()
    ts, kind, side, price, qty, target = (
        a.tolist() for a in (stream.ts, stream.kind, stream.side, stream.price, stream.qty, stream.target)
    )
    t0 = time.perf_counter()
    for oid in range(len(ts)):
        if kind[oid] == k.K_LIMIT:
            book.limit(oid, side[oid], price[oid], qty[oid])
        elif kind[oid] == k.K_MARKET:
            book.market(oid, side[oid], qty[oid])
        elif kind[oid] == k.K_CANCEL:
            book.cancel(target[oid])
    return time.perf_counter() - t0, book


def main(n_events: int = 1_000_000, n_reference: int = 200_000, seed: int = 1) -> dict:
    stream = _stream(n_events, seed)
    run_engine(stream.slice(0, 10_000), ExchangeConfig())  # compile (or load the numba cache)
    rows = []
    cases = [
        ("engine: matching + fills + VI checks", ExchangeConfig(emit_book=False)),
        ("engine: + 10-level book row per event", ExchangeConfig(emit_book=True)),
    ]
    for label, config in cases:
        best = min(run_engine(stream, config)[0] for _ in range(3))
        rows.append(
            {"implementation": label, "events": n_events, "seconds": best, "events_per_s": n_events / best}
        )
    sub = stream.slice(0, n_reference)
    ref_s, book = run_reference(sub)
    rows.append(
        {
            "implementation": "baseline: plain-Python book (dict+deque+heap)",
            "events": n_reference,
            "seconds": ref_s,
            "events_per_s": n_reference / ref_s,
        }
    )
    # the two must agree trade for trade on the same events (VI off: the baseline has none)
    _, ex = run_engine(sub, ExchangeConfig(emit_book=False, vi_enabled=False))
    out = ex.raw_events()
    trades = out[out[:, k.C_TYPE] == k.EV_TRADE]
    engine_trades = list(
        zip(*(trades[:, c].tolist() for c in (k.C_PRICE, k.C_VOLUME, k.C_SIDE, k.C_ORDER)), strict=True)
    )
    agree = engine_trades == book.trades
    speedup = rows[0]["events_per_s"] / rows[-1]["events_per_s"]
    publish(
        "matching",
        "Matching engine throughput (one core)",
        rows,
        notes={
            "trades_agree_with_baseline": agree,
            "baseline_trades": len(book.trades),
            "speedup_vs_baseline": round(speedup, 1),
            "target_events_per_s": 1_000_000,
        },
    )
    if not agree:
        raise SystemExit("engine and baseline disagree on the trades of the same events")
    return {"rows": rows, "speedup": speedup}


if __name__ == "__main__":
    main()
