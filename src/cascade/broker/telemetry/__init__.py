"""Broker telemetry: Prometheus metrics, trace propagation and the delivery activity feed."""
