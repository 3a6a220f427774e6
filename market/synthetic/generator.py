"""The synthetic KRX market: a universe of stocks, a plan for each day (market factor, program
baskets, shock episodes with their causes) and the simulation of every stock-day through the
exchange engine. ``generate`` writes the raw dataset of architecture.md.

Every random draw comes from a generator seeded by (seed, day, stock), so the output is the same
whatever the number of jobs and whichever order they finish in.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from market import krx
from market.exchange.engine import Exchange, ExchangeConfig, Instrument
from market.krx.dataset import clear_verdict, tick_file
from market.krx.flows import publication_times_us
from market.krx.schema import INSTRUMENT_SCHEMA, RECV_TS_FIELD, SYNTHETIC_VI_LOG_FIELDS, VI_LOG_SCHEMA
from market.parallel import TaskRunner
from market.synthetic import kernels as sk

VI_LOG_SYNTHETIC_SCHEMA = pa.schema([*VI_LOG_SCHEMA, *SYNTHETIC_VI_LOG_FIELDS])
INTENSITIES = ("normal", "hot")
# shock episodes per stock-day: "normal" gives about 5 VIs per stock-year, "hot" many a day
EPISODES_PER_STOCK_DAY = {"normal": 0.025, "hot": 3.0}
CAUSE_WEIGHTS = {"news": 0.35, "disclosure": 0.2, "program": 0.25, "panic": 0.2}


@dataclass(frozen=True)
class Edge:
    """How predictable a VI's aftermath is: the synthetic market's named knob (`--edge`).

    ``auction_pull`` and ``auction_reach`` set how much of the latent move a VI auction discovers:
    how far toward the fair value the liquidity providers quote (at 0.35, the call uncrosses well
    short of it) and how many ticks past the touch informed traders bid. ``shock_pull`` is the
    liquidity providers' pull in continuous trading while a shock plays out (by default the calm
    ``ANCHOR_PULL``; at 0.35 the release walks the rest of the move slowly, in plain sight).
    ``drift`` scales the latent continuation after a shock's jump (each cause's mean and spread)
    and ``drift_s`` bounds how long it lasts. Synthetic results measure the pipeline, not the
    market: ``high`` is for pipeline tests that need a strong signal."""

    auction_pull: float
    auction_reach: int
    shock_pull: float
    drift: float
    drift_s: tuple[float, float]


EDGES = {
    # the default: the auction finds most of the fair value, a little drift is left, by cause
    "low": Edge(
        auction_pull=1.0, auction_reach=100, shock_pull=sk.ANCHOR_PULL, drift=0.1, drift_s=(60.0, 300.0)
    ),
    # before issue 13: the release walks the rest of the jump and the drift runs for minutes
    "high": Edge(
        auction_pull=0.35, auction_reach=sk.INFORMED_REACH, shock_pull=0.35, drift=1.0, drift_s=(120.0, 900.0)
    ),
}
DEFAULT_EDGE = "low"

SECONDS_FROM_0830 = 7 * 3600 + 2 * 600  # 08:30 to 15:50: enough for a VI-extended close

_SYLLABLES = (
    "한",
    "성",
    "대",
    "동",
    "신",
    "미",
    "래",
    "코",
    "비",
    "캡",
    "광",
    "명",
    "태",
    "우",
    "진",
    "현",
    "세",
    "영",
)
_SECTORS = (
    "전자",
    "바이오",
    "화학",
    "제약",
    "반도체",
    "에너지",
    "건설",
    "소재",
    "통신",
    "엔터",
    "로보틱스",
    "중공업",
)


@dataclass(frozen=True)
class StockSpec:
    stock_code: str
    stock_name: str
    market: str
    kospi200: bool
    kosdaq150: bool
    futures_underlying: bool
    first_base_price: int
    activity: float  # orders per second of noise flow at mid-day
    lp_value: float  # KRW quoted per LP level
    daily_vol: float
    beta: float

    @property
    def instrument(self) -> Instrument:
        return Instrument(
            self.stock_code,
            self.stock_name,
            self.market,
            self.kospi200,
            self.kosdaq150,
            self.futures_underlying,
        )


def make_universe(n_stocks: int, seed: int, on: dt.date) -> list[StockSpec]:
    """KOSPI and KOSDAQ names across the tick bands (about 1,000 to 800,000 KRW); KOSPI200 and
    KOSDAQ150 members are the larger, busier names of their market, and the largest of all
    underlie single-stock futures."""
    rng = np.random.default_rng([seed, 0xC0DE])
    codes = rng.choice(np.arange(1_000, 99_999), size=n_stocks, replace=False) * 10
    names: set[str] = set()
    specs = []
    for i in range(n_stocks):
        market = "KOSPI" if rng.random() < 0.45 else "KOSDAQ"
        size = rng.random()
        price = float(np.exp(rng.uniform(np.log(1_000), np.log(800_000))))
        kospi200 = market == "KOSPI" and size > 0.4
        while True:
            name = "".join(rng.choice(_SYLLABLES, 2)) + str(rng.choice(_SECTORS))
            if name not in names:
                names.add(name)
                break
        activity = float(np.exp(rng.normal(0.3 + 0.9 * size, 0.4)))
        specs.append(
            StockSpec(
                stock_code=f"{int(codes[i]):06d}",
                stock_name=name,
                market=market,
                kospi200=kospi200,
                kosdaq150=market == "KOSDAQ" and size > 0.5,
                futures_underlying=size > 0.75,
                first_base_price=krx.floor_to_tick(int(price), market, on),
                activity=activity,
                lp_value=float(np.exp(rng.normal(np.log(8e6) + 1.5 * size, 0.4))),
                daily_vol=float(rng.uniform(0.015, 0.03) * (1.4 if market == "KOSDAQ" else 1.0)),
                beta=float(rng.uniform(0.6, 1.4)),
            )
        )
    return specs


@dataclass(frozen=True)
class DayPlan:
    day: dt.date
    market_returns: np.ndarray  # market factor log-return per second from 08:30
    baskets: np.ndarray  # program baskets: (t0 seconds after 08:30, direction, persist)


def make_day_plan(day: dt.date, seed: int, day_index: int) -> DayPlan:
    rng = np.random.default_rng([seed, day_index, 0xDA7])
    day_vol = 0.009 * float(np.exp(rng.normal(0, 0.35)))
    per_second = day_vol / np.sqrt(6.5 * 3600)
    returns = rng.standard_t(4, size=SECONDS_FROM_0830) * per_second / np.sqrt(2.0)
    returns[:1800] = 0.0  # the market factor moves from the open
    n_baskets = rng.poisson(6)
    baskets = (
        np.column_stack(
            [
                rng.uniform(1800 + 300, 1800 + 6 * 3600, size=n_baskets),
                rng.choice([-1.0, 1.0], size=n_baskets),
                (rng.random(n_baskets) < 0.5).astype(float),
            ]
        )
        if n_baskets
        else np.zeros((0, 3))
    )
    return DayPlan(day=day, market_returns=returns, baskets=baskets)


def make_episodes(
    spec: StockSpec, plan: DayPlan, intensity: str, edge: Edge, rng: np.random.Generator
) -> np.ndarray:
    """The shock episodes of one stock-day, each with its cause and the traces it will leave. The
    edge scales only the continuation: every other draw is the same whatever the edge."""
    count = rng.poisson(EPISODES_PER_STOCK_DAY[intensity])
    causes = list(CAUSE_WEIGHTS)
    weights = np.array(list(CAUSE_WEIGHTS.values()))
    rows = []
    for _ in range(count):
        cause = causes[rng.choice(len(causes), p=weights / weights.sum())]
        ep = np.zeros(sk.EP_COLS)
        ep[sk.EP_T0] = rng.uniform(1800 + 120, 1800 + 6 * 3600 + 1200)  # 09:02 to 15:10
        ep[sk.EP_FLAG_T] = -1
        ep[sk.EP_CAUSE] = sk.CAUSES.index(cause)
        ep[sk.EP_DIR] = 1.0 if rng.random() < 0.6 else -1.0
        ep[sk.EP_WITHDRAW] = rng.uniform(0.3, 0.8)
        if cause in ("news", "disclosure"):
            big = cause == "disclosure"
            ep[sk.EP_JUMP] = rng.uniform(0.08, 0.2) if big else rng.uniform(0.06, 0.16)
            ep[sk.EP_JUMP_DUR] = rng.uniform(2, 20) if big else rng.uniform(5, 60)
            # informed flow tends to continue, with enough noise that it sometimes fades
            spread = 0.03 * np.sqrt(edge.drift)
            ep[sk.EP_CONT] = rng.normal((0.03 if big else 0.02) * edge.drift, spread)
            ep[sk.EP_CONT_DUR] = rng.uniform(*edge.drift_s)
            if rng.random() < (0.9 if big else 0.7):  # news is sometimes missed by the feed
                ep[sk.EP_FLAG_T] = ep[sk.EP_T0] + (rng.uniform(-5, 2) if big else rng.uniform(-20, 5))
        elif cause == "program":
            if len(plan.baskets):  # the stock's leg of a market-wide basket
                b = plan.baskets[rng.integers(len(plan.baskets))]
                ep[sk.EP_T0], ep[sk.EP_DIR], ep[sk.EP_PERSIST] = b[0] + rng.uniform(0, 5), b[1], b[2]
            else:
                ep[sk.EP_PERSIST] = float(rng.random() < 0.5)
            ep[sk.EP_JUMP] = rng.uniform(0.0, 0.02)
            ep[sk.EP_JUMP_DUR] = rng.uniform(20, 120)
            ep[sk.EP_PRESSURE] = rng.uniform(3, 10) * np.sqrt(spec.activity)
            ep[sk.EP_PRESSURE_DUR] = rng.uniform(40, 180)
            # persistent program flow keeps pushing after the release; a spent one lets it revert
            ep[sk.EP_CONT] = rng.uniform(0.01, 0.04) * edge.drift if ep[sk.EP_PERSIST] else 0.0
            ep[sk.EP_CONT_DUR] = rng.uniform(edge.drift_s[0], edge.drift_s[1] * 2 / 3)
        else:  # panic: retail dumps, the fair value barely moves, the price overshoots and reverts
            ep[sk.EP_DIR] = -1.0 if rng.random() < 0.9 else 1.0
            ep[sk.EP_JUMP] = rng.uniform(0.0, 0.02)
            ep[sk.EP_JUMP_DUR] = rng.uniform(10, 60)
            ep[sk.EP_PRESSURE] = rng.uniform(4, 12) * np.sqrt(spec.activity)
            ep[sk.EP_PRESSURE_DUR] = rng.uniform(20, 120)
            ep[sk.EP_WITHDRAW] = rng.uniform(0.5, 0.9)
        rows.append(ep)
    rows.sort(key=lambda r: r[sk.EP_T0])
    return np.array(rows).reshape(-1, sk.EP_COLS)


def stock_parameters(
    spec: StockSpec, day: dt.date, base_price: int, edge: Edge, rng: np.random.Generator
) -> np.ndarray:
    p = np.zeros(sk.P_COLS)
    p[sk.P_SIGMA] = spec.daily_vol / np.sqrt(6.5 * 3600)
    p[sk.P_BETA] = spec.beta
    p[sk.P_NOISE_RATE] = spec.activity
    p[sk.P_INFORMED_RATE] = 0.3 + 1.5 * spec.activity
    p[sk.P_SHOCK_INFORMED_RATE] = 3.0 * (0.3 + 0.6 * spec.activity)
    p[sk.P_MOMENTUM_RATE] = 0.5 + 0.3 * spec.activity
    lot = _round_lot(base_price)
    p[sk.P_LOT] = lot
    p[sk.P_LP_DEPTH] = max(lot, spec.lp_value / base_price)
    # quoted spread of about 8-25 bp, fewer ticks where a tick is a large part of the price
    tick_bp = krx.tick_size(base_price, spec.market, day) / base_price * 1e4
    p[sk.P_LP_HALF] = int(min(4, (25.0 / np.sqrt(spec.activity)) / (2 * tick_bp)))
    p[sk.P_GAP] = rng.normal(0, 0.01)
    p[sk.P_VOL_OF_VOL] = 0.04
    p[sk.P_INFORMED_EDGE] = 0.0003
    p[sk.P_SHOCK_INFORMED_EDGE] = 0.004
    p[sk.P_AUCTION_PULL] = edge.auction_pull
    p[sk.P_AUCTION_REACH] = edge.auction_reach
    p[sk.P_SHOCK_PULL] = edge.shock_pull
    return p


def _round_lot(price: int) -> int:
    """Orders come in round lots worth about 1M KRW: 1, 5, 10, 50, 100, 500 or 1,000 shares."""
    raw = 1_000_000 / price
    return int(max(1, min((1, 5, 10, 50, 100, 500, 1_000), key=lambda lot: abs(np.log(lot / raw)))))


@dataclass(frozen=True)
class StockDayResult:
    ticks: pa.Table
    vi_log: pa.Table
    close_price: int
    n_order_events: int


def simulate_stock_day(
    spec: StockSpec,
    day: dt.date,
    base_price: int,
    plan: DayPlan,
    intensity: str,
    seed: int,
    day_index: int,
    stock_index: int,
    edge: str = DEFAULT_EDGE,
) -> StockDayResult:
    rng = np.random.default_rng([seed, day_index, stock_index])
    episodes = make_episodes(spec, plan, intensity, EDGES[edge], rng)
    params = stock_parameters(spec, day, base_price, EDGES[edge], rng)
    kernel_seed = int(rng.integers(0, 2**31 - 1))
    schedule = krx.session_schedule(day)
    t_start = krx.epoch_us(schedule.opening_auction_start)
    t_end = t_start + SECONDS_FROM_0830 * 1_000_000
    pub = publication_times_us(day)
    exchange_seed = int(rng.integers(0, 2**31 - 1))
    capacity = int(60_000 * max(1.0, spec.activity))
    while True:
        ex = Exchange(
            spec.instrument,
            day,
            base_price,
            config=ExchangeConfig(emit_book=False, record_fills=False),
            seed=exchange_seed,
            order_capacity=capacity * 4,
            output_capacity=capacity * 2,
        )
        state = ex.kernel_state()
        overlay = np.zeros((capacity * 2, sk.OV_COLS), dtype=np.int64)
        vi_cause = np.zeros(len(state[6]), dtype=np.int64)
        vi_drift = np.full(len(state[6]), np.nan)
        status = sk.simulate_stock_day(
            *state,
            overlay,
            vi_cause,
            vi_drift,
            params,
            plan.market_returns,
            episodes,
            pub,
            t_start,
            t_end,
            base_price,
            kernel_seed,
        )
        if status == sk.STATUS_OK:
            break
        capacity *= 2  # deterministic: the rerun draws the same numbers into bigger buffers
    ov = overlay[: len(ex.raw_events())]
    ticks = ex.ticks(
        overlay={
            "program_net_buy": ov[:, sk.OV_PROGRAM_NET],
            "institution_net": ov[:, sk.OV_INSTITUTION],
            "foreign_net": ov[:, sk.OV_FOREIGN],
            "individual_net": ov[:, sk.OV_INDIVIDUAL],
            "news_flag": ov[:, sk.OV_NEWS].astype(bool),
            "disclosure_flag": ov[:, sk.OV_DISCLOSURE].astype(bool),
        }
    )
    # when a retail feed would have delivered each row (its own draws: the market stays the same)
    stamps = ticks["timestamp"].cast(pa.int64()).to_numpy()
    feed = np.random.default_rng([seed, day_index, stock_index, 0xFEED])
    received = pa.array(krx.simulated_receive_us(stamps, feed)).cast(RECV_TS_FIELD.type)
    ticks = ticks.append_column(RECV_TS_FIELD, received)
    n_vi = len(ex.vi_records())
    cause = [sk.CAUSES[c] if c else None for c in vi_cause[:n_vi]]
    drift = [None if np.isnan(d) else float(d) for d in vi_drift[:n_vi]]
    vi_log = ex.vi_log().append_column(SYNTHETIC_VI_LOG_FIELDS[0], pa.array(cause, pa.string()))
    vi_log = vi_log.append_column(SYNTHETIC_VI_LOG_FIELDS[1], pa.array(drift, pa.float64()))
    close = ex.close_price or ex.last_price or base_price
    return StockDayResult(ticks, vi_log, close, ex.next_order_id)


# ---------------------------------------------------------------- the whole dataset


@dataclass(frozen=True)
class StockDayTask:
    out: str
    spec: StockSpec
    day: dt.date
    base_price: int
    plan: DayPlan
    intensity: str
    seed: int
    day_index: int
    stock_index: int
    edge: str = DEFAULT_EDGE


@dataclass(frozen=True)
class StockDayDone:
    stock_index: int
    close_price: int
    vi_log: pa.Table
    n_ticks: int
    n_order_events: int


def write_parquet(table: pa.Table, path: Path) -> None:
    """Deterministic Parquet (same table, same bytes), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=256_000)
    os.replace(tmp, path)


def run_stock_day(task: StockDayTask) -> StockDayDone:
    result = simulate_stock_day(
        task.spec,
        task.day,
        task.base_price,
        task.plan,
        task.intensity,
        task.seed,
        task.day_index,
        task.stock_index,
        task.edge,
    )
    write_parquet(result.ticks, tick_file(Path(task.out), task.day, task.spec.stock_code))
    return StockDayDone(
        task.stock_index, result.close_price, result.vi_log, result.ticks.num_rows, result.n_order_events
    )


@dataclass
class GenerateSummary:
    stocks: int
    days: int
    intensity: str
    edge: str
    first_day: dt.date
    last_day: dt.date
    ticks: int
    order_events: int
    vis: int
    vis_by_type: dict[str, int]
    vis_by_cause: dict[str, int]
    seconds: float

    def as_dict(self) -> dict:
        return {key: (str(v) if isinstance(v, dt.date) else v) for key, v in asdict(self).items()}


def generate(
    out: Path,
    stocks: int,
    days: int,
    seed: int,
    start: dt.date,
    intensity: str = "normal",
    jobs: int = 1,
    ray_address: str | None = None,
    on_stock_day: Callable[[StockDayDone], None] | None = None,
    edge: str = DEFAULT_EDGE,
) -> GenerateSummary:
    """Write ``out/ticks/date=.../<code>.parquet``, ``out/instruments.parquet`` and
    ``out/vi_log.parquet`` (with the synthetic cause and latent drift) for ``stocks`` stocks over
    ``days`` XKRX sessions from ``start``. Stocks of one day run in parallel; each day's base
    price is the previous close. ``edge`` (:data:`EDGES`) sets how predictable a VI's aftermath is."""
    if intensity not in INTENSITIES:
        raise ValueError(f"unknown VI intensity {intensity!r}: expected one of {INTENSITIES}")
    if edge not in EDGES:
        raise ValueError(f"unknown edge {edge!r}: expected one of {tuple(EDGES)}")
    if stocks < 1 or days < 1:
        raise ValueError("stocks and days must be at least 1")
    t0 = time.perf_counter()
    out = Path(out)
    sessions = krx.next_trading_days(start, days)
    universe = make_universe(stocks, seed, sessions[0])
    base = [s.first_base_price for s in universe]
    clear_verdict(out)  # a verdict on earlier files says nothing of these
    runner = TaskRunner(jobs, ray_address)
    instruments, vi_logs = [], []
    n_ticks = n_orders = 0
    try:
        for d, day in enumerate(sessions):
            plan = make_day_plan(day, seed, d)
            base = [krx.floor_to_tick(b, s.market, day) for b, s in zip(base, universe, strict=True)]
            instruments += [
                (day, s.stock_code, s.stock_name, s.market, s.kospi200, s.kosdaq150, s.futures_underlying, b)
                for s, b in zip(universe, base, strict=True)
            ]
            tasks = [
                StockDayTask(str(out), s, day, base[i], plan, intensity, seed, d, i, edge)
                for i, s in enumerate(universe)
            ]
            for done in runner.map(run_stock_day, tasks):
                base[done.stock_index] = done.close_price
                vi_logs.append(done.vi_log)
                n_ticks += done.n_ticks
                n_orders += done.n_order_events
                if on_stock_day:
                    on_stock_day(done)
    finally:
        runner.close()
    inst = pa.Table.from_pylist(
        [dict(zip(INSTRUMENT_SCHEMA.names, row, strict=True)) for row in instruments],
        schema=INSTRUMENT_SCHEMA,
    )
    write_parquet(inst, out / "instruments.parquet")
    vi_log = pa.concat_tables(vi_logs).cast(VI_LOG_SYNTHETIC_SCHEMA)
    vi_log = vi_log.sort_by([("trigger_ts", "ascending"), ("stock_code", "ascending")])
    write_parquet(vi_log, out / "vi_log.parquet")
    summary = GenerateSummary(
        stocks=stocks,
        days=len(sessions),
        intensity=intensity,
        edge=edge,
        first_day=sessions[0],
        last_day=sessions[-1],
        ticks=n_ticks,
        order_events=n_orders,
        vis=vi_log.num_rows,
        vis_by_type=dict(sorted(Counter(vi_log["vi_type"].to_pylist()).items())),
        vis_by_cause=dict(sorted(Counter(c or "none" for c in vi_log["cause"].to_pylist()).items())),
        seconds=time.perf_counter() - t0,
    )
    (out / "generate_summary.json").write_text(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False))
    return summary
