"""Local traces: the OTLP/HTTP receiver and span store of ``cascade run``, and ``cascade trace``."""
