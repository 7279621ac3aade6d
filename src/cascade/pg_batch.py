"""One simple query on libpq for the event transaction's batched statements (PostgreSQL).

``BEGIN; <claim>`` and ``<record>; COMMIT`` go to the server as one simple query each,
through libpq's blocking ``PQexec`` (psycopg's ``pgconn.exec_``, which releases the GIL while
it waits). psycopg's cursor drives libpq non-blocking from a Python wait loop: measured on
this machine at ~65 µs CPU and ~400 µs wall per ``SELECT 1`` round trip, against ~15 µs CPU
and ~110 µs wall for ``exec_``. Parameters become literals quoted by libpq
(``PQescapeLiteral``); bytes go as hex.
"""

from __future__ import annotations

from typing import Any

from psycopg import DataError, OperationalError, pq
from psycopg.errors import error_from_result

__all__ = ["run_batch"]


def run_batch(connection: Any, statement: str, parameters: tuple[Any, ...]) -> Any:
    """Run ``statement`` (``%s`` placeholders, may hold several statements) on psycopg
    ``connection``'s libpq connection; the first row of the last statement's result as text
    values, or None. Raises psycopg's errors, as its cursor would."""
    pgconn = connection.pgconn
    encoding = connection.info.encoding
    escaping = pq.Escaping(pgconn)
    literals = tuple(_literal(escaping, encoding, value) for value in parameters)
    result = pgconn.exec_((statement % literals).encode(encoding))
    if result.status == pq.ExecStatus.FATAL_ERROR:
        if pgconn.status == pq.ConnStatus.BAD:
            raise OperationalError(f"the connection is gone: {pgconn.error_message.decode()}")
        raise error_from_result(result, encoding=encoding)
    if result.status != pq.ExecStatus.TUPLES_OK or result.ntuples == 0:
        return None
    return tuple(
        None if value is None else value.decode(encoding)
        for value in (result.get_value(0, column) for column in range(result.nfields))
    )


def _literal(escaping: Any, encoding: str, value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"'{value!r}'::float8"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"decode('{bytes(value).hex()}', 'hex')"
    if isinstance(value, str):
        if "\x00" in value:
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        quoted: bytes = escaping.escape_literal(value.encode(encoding))
        return quoted.decode(encoding)
    raise TypeError(f"no literal for {type(value).__name__}")
