"""Run every benchmark: ``python -m bench`` (``make bench``)."""

from bench import features, generation, matching, slicing, validation

BENCHMARKS = [matching.main, generation.main, slicing.main, validation.main, features.main]

for bench in BENCHMARKS:
    bench()
