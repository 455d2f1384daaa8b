"""Benchmarks: the same workload across actors and concurrency levels, saved as replayable JSON.

`prompts` (workloads), `runner` (the engine), `summary` (percentiles, throughput), `compare`
(tables and plots), `machine` (what it ran on).
"""

from workbench.bench.runner import BenchmarkRunner, BenchProgress, run_benchmark

__all__ = ["BenchProgress", "BenchmarkRunner", "run_benchmark"]
