"""The distribution version, in one place (imported by modules that report it)."""

__version__ = "0.1.0"
