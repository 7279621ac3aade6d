"""A real local OIDC issuer (cascade.issuer) behind an HTTP server, for sender-identity tests."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from cascade.issuer import LocalIssuer
from tests.thread_server import QuietHandler, ThreadServer


class IssuerServer:
    """A LocalIssuer behind a real HTTP server, counting JWKS fetches."""

    def __init__(self) -> None:
        self.fetches = 0
        self.down = False
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if owner.down:
                    self.send_error(502)
                    return
                if self.path == "/.well-known/openid-configuration":
                    document = owner.issuer.discovery()
                elif self.path == "/.well-known/jwks.json":
                    owner.fetches += 1
                    document = owner.issuer.jwks()
                else:
                    self.send_error(404)
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        handler: type[BaseHTTPRequestHandler] = Handler
        self.server = ThreadServer(handler)
        self.issuer = LocalIssuer(self.server.url)
