"""Servers the benchmarks start: baselines, the Cascade function, OTLP sink, subscriber."""
