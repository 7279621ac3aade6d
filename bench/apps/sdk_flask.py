"""Baseline (b): the canonical cloudevents SDK 2.x handler in Flask, answering 202."""

from __future__ import annotations

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/")
    def receive() -> tuple[str, int]:
        message = HTTPMessage(headers=dict(request.headers), body=request.get_data())
        try:
            from_http_event(message)
        except Exception as exc:  # the SDK raises assorted errors for non-CloudEvents
            return f"not a CloudEvent: {exc}", 400
        return "", 202

    return app


app = create_app()
