"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import (
    backtest,
    features,
    generation,
    kis_ingest,
    live,
    matching,
    rl,
    serving,
    slicing,
    tapes,
    training,
    validation,
)

BENCHMARKS = [
    matching.main,
    generation.main,
    slicing.main,
    validation.main,
    kis_ingest.main,
    features.main,
    training.main,
    backtest.main,
    tapes.main,
    rl.main,
    serving.main,
    live.main,
]

for bench in BENCHMARKS:
    bench()
