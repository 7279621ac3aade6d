"""Fixtures of the hostile-input suite: the shop's in-process clients (tests/functions) and the
environment they start from."""

from tests.functions.conftest import _quiet_env, database_url, make_client, sink

__all__ = ["_quiet_env", "database_url", "make_client", "sink"]
