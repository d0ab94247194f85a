"""Throughput and scale measurements; `python -m benchmarks` runs them all."""
