"""What keeps other web pages and other hosts' names out of the console.

- Every request must name the console by a host it is served as (``Host``): a page on another
  site that re-points its own name at 127.0.0.1 (DNS rebinding) sends its own name and is
  refused, so it can neither read the console nor fetch the page that holds the token.
- A request that carries an ``Origin`` must come from the console itself, and one the browser
  marks cross-site (``Sec-Fetch-Site``) is refused, unless it is a link followed to a page.
- A request that changes something (anything but GET/HEAD) must send the run's token in
  ``X-Cascade-Console-Token`` and a JSON body: the token is only in the console's own page,
  which no other site can read, and a cross-site form cannot set that header.
- The page may not be framed (no click-jacking of the replay button), scripts and styles come
  from the console only (an event's text can never run), and API answers are not cached.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import orjson
from aiohttp import web

__all__ = ["TOKEN_HEADER", "Guard", "new_token", "problem"]

TOKEN_HEADER: Final = "X-Cascade-Console-Token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
_LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def problem(status: int, title: str, detail: str = "") -> web.Response:
    """An RFC 9457 problem answer."""
    body = {"title": title, "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json"
    )


class Guard:
    """The aiohttp middleware doing the checks above, for a console served on ``port``."""

    def __init__(self, token: str, port: int, hosts: Iterable[str] = ()) -> None:
        self.token = token
        names = {*_LOOPBACK_NAMES, *(f"[{h}]" if ":" in h else h for h in hosts)}
        self.hosts = frozenset(f"{name}:{port}" for name in names)
        self.origins = frozenset(f"http://{host}" for host in self.hosts)

    def token_ok(self, sent: str | None) -> bool:
        if not sent:
            return False
        return hmac.compare_digest(sent.encode("utf-8", "replace"), self.token.encode())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            response: web.StreamResponse = refusal
        else:
            response = await handler(request)
        if not response.prepared:
            self.secure(response)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        host = (request.headers.get("Host") or "").lower()
        if host not in self.hosts:
            return problem(403, "unknown host", "open the console by the URL cascade run printed")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in self.origins:
            return problem(403, "cross-origin request refused")
        cross_site = request.headers.get("Sec-Fetch-Site", "same-origin") not in (
            "same-origin",
            "none",
        )
        if request.method in _SAFE_METHODS:
            # Following a link to the console from another site is fine (that site cannot read
            # what it opens); another site's script fetching from it is not.
            if cross_site and request.headers.get("Sec-Fetch-Mode") != "navigate":
                return problem(403, "cross-site request refused")
            return None
        if cross_site:
            return problem(403, "cross-site request refused")
        if not self.token_ok(request.headers.get(TOKEN_HEADER)):
            return problem(
                403, "missing or wrong console token", f"send the page's token in {TOKEN_HEADER}"
            )
        if request.content_type != "application/json":
            return problem(415, "send application/json")
        return None

    @staticmethod
    def secure(response: web.StreamResponse) -> None:
        """The headers every answer carries; a streamed answer calls this before it starts."""
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
