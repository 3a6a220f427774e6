"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import matching

BENCHMARKS = [matching.main]

for bench in BENCHMARKS:
    bench()
