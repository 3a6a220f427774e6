"""Benchmarks: each prints a table and writes JSON under data/reports/bench/, with its baseline
measured in the same run. ``python -m bench`` (``make bench``) runs them all."""
