"""Baseline (a): a bare Flask app that answers 202 to any POST, reading nothing."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.post("/")
def accept() -> tuple[str, int]:
    return "", 202
