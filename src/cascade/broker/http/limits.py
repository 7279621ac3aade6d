"""What keeps slow or numerous clients from holding the broker's HTTP port.

- **Connection cap** (``--max-connections``): past it, a new connection gets ``503`` with
  ``Connection: close`` at once, before anything is read, and is closed.
- **Header deadline** (``--read-timeout``): a connection must complete a request head within
  this many seconds of opening (or of its last answer); aiohttp's keep-alive timer closes it
  otherwise, however many bytes it trickles. A kept-alive idle connection ends the same way.
- **Body deadline**: the ingress reads a body within the same number of seconds, else ``408``
  (``cascade.broker.ingress.receiver``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["CappedServer", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_READ_TIMEOUT_SECONDS"]

DEFAULT_MAX_CONNECTIONS: Final = 1000
DEFAULT_READ_TIMEOUT_SECONDS: Final = 10.0
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Cascade-Error: too many connections (--max-connections)\r\nConnection: close\r\n\r\n"
)

logger = logging.getLogger(__name__)


class _Refuse(asyncio.Protocol):
    """Answers 503 and hangs up: the connection never reaches the HTTP machinery."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(_BUSY)
        writer.close()


class CappedServer(web.Server):
    """aiohttp's low-level server with a connection cap and the read deadline above."""

    def __init__(
        self, *args: Any, max_connections: int, read_timeout: float, **kwargs: Any
    ) -> None:
        # keepalive_timeout also runs from a connection's first byte: the header deadline.
        super().__init__(*args, keepalive_timeout=read_timeout, **kwargs)
        self.max_connections = max_connections
        self.refused = 0

    def open_connections(self) -> int:
        return len(self._connections)

    def __call__(self) -> RequestHandler:
        if self.open_connections() >= self.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                logger.warning(
                    "%d connection(s) refused: %d open is --max-connections",
                    self.refused,
                    self.max_connections,
                )
            return _Refuse()  # type: ignore[return-value]
        return super().__call__()
