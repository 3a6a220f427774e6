"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import generation, matching, slicing

BENCHMARKS = [matching.main, generation.main, slicing.main]

for bench in BENCHMARKS:
    bench()
