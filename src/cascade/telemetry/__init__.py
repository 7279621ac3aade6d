"""Telemetry written once for every function: tracing, metrics and JSON logs."""

from cascade.telemetry.tracing import setup_tracing

__all__ = ["setup_tracing"]
