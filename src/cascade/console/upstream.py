"""The console's reads from the broker: its activity feed (once, or followed) and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import orjson

__all__ = ["Broker", "UpstreamError"]

ACTIVITY_CAPACITY: Final = 2000  # the broker feed's default capacity: everything it holds
_MAX_LINE: Final = 1024 * 1024


class UpstreamError(Exception):
    """The broker could not be reached or answered something unexpected."""


class Broker:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self._session = session

    async def activity(self, limit: int = ACTIVITY_CAPACITY) -> list[dict[str, Any]]:
        """The newest ``limit`` entries of the activity feed, oldest first."""
        text = await self._get(f"/-/activity?limit={limit}")
        try:
            return [orjson.loads(line) for line in text.splitlines() if line.strip()]
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"the activity feed sent a non-JSON line: {exc}") from None

    async def metrics(self) -> str:
        return (await self._get("/metrics")).decode("utf-8", "replace")

    async def follow(self, after: int | None, limit: int) -> AsyncIterator[dict[str, Any] | None]:
        """Entries as they happen (after ``after``, else the newest ``limit`` first); None for
        each heartbeat the broker sends while idle. Ends when the broker ends the stream."""
        query = f"follow=1&after={after}" if after is not None else f"follow=1&limit={limit}"
        try:
            async with self._session.get(
                f"{self.url}/-/activity?{query}",
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
            ) as response:
                if response.status != 200:
                    raise UpstreamError(f"GET /-/activity answered {response.status}")
                while True:
                    line = await response.content.readline()
                    if not line:
                        return
                    if len(line) > _MAX_LINE:
                        raise UpstreamError("the activity feed sent an over-long line")
                    line = line.strip()
                    if not line:
                        yield None
                        continue
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        raise UpstreamError(
                            f"the activity feed sent a non-JSON line: {exc}"
                        ) from None
                    if isinstance(entry, dict):
                        yield entry
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"cannot follow the broker's activity feed: {exc}") from None

    async def _get(self, path: str) -> bytes:
        try:
            async with self._session.get(
                self.url + path, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"cannot reach the broker at {self.url}: {exc}") from None
        if response.status != 200:
            raise UpstreamError(f"GET {path} answered {response.status}")
        return body
