"""Cascade: event-driven microservices as CloudEvents HTTP functions."""

__version__ = "0.1.0"

__all__ = ["__version__"]
