"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import generation, matching

BENCHMARKS = [matching.main, generation.main]

for bench in BENCHMARKS:
    bench()
