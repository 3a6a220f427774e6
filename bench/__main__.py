"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import generation, matching, slicing, validation

BENCHMARKS = [matching.main, generation.main, slicing.main, validation.main]

for bench in BENCHMARKS:
    bench()
