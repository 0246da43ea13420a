"""Benchmarks: buildlib's speed as ratios against peers measured in the same run.

Run with `nox -s bench` or `python benchmarks/run.py [NAME ...] [--quick]`; see
docs/benchmarks.md.
"""
