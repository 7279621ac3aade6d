"""Cascade benchmarks: each one measures its baselines in the same run and reports ratios.

Run them with ``make bench`` or ``python -m bench.function_throughput`` /
``python -m bench.broker_throughput`` (``--help`` lists the flags; ``--quick`` is a smoke run).
See docs/benchmarks.md.
"""
