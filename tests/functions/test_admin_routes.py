"""Operator routes (fault injection, the dead-letter write API, the outbox flush, the order
listing with customer emails) answer 404 unless CASCADE_ADMIN_ROUTES is on (issue 10 row 8)."""

from __future__ import annotations

from typing import Any

import pytest

from cascade import Settings
from tests.functions.conftest import ClientFactory

# (function, method, path, json body, status when enabled)
ADMIN: list[tuple[str, str, str, Any, int]] = [
    ("payment", "PUT", "/faults", {"rate": 0.5}, 200),
    ("payment", "DELETE", "/faults", None, 200),
    ("dead-letter", "POST", "/dead-letters/1/replayed", None, 404),  # none stored: its own 404
    ("order", "POST", "/outbox/flush", None, 200),
    ("order", "GET", "/orders", None, 200),
]
# Routes next to them that stay open: reading a setting, the sink itself, one order by id.
OPEN: list[tuple[str, str, str]] = [
    ("payment", "GET", "/faults"),
    ("dead-letter", "GET", "/dead-letters"),
    ("order", "GET", "/outbox"),
]


@pytest.mark.parametrize(("name", "method", "path", "payload", "enabled"), ADMIN)
def test_admin_routes_answer_404_unless_enabled(
    make_client: ClientFactory, name: str, method: str, path: str, payload: Any, enabled: int
) -> None:
    off = make_client(name, admin_routes=False).request(method, path, json=payload)
    assert off.status == 404
    assert off.problem is not None
    assert off.problem["detail"] == f"no route for {path}; CloudEvents go to POST /"
    on = make_client(name, admin_routes=True).request(method, path, json=payload)
    assert on.status == enabled, on.body
    if enabled == 404:  # the route ran: its own answer, not the runtime's unknown-path one
        assert on.problem is not None
        assert "no route" not in on.problem["detail"]


@pytest.mark.parametrize(("name", "method", "path"), OPEN)
def test_the_other_routes_stay_open(
    make_client: ClientFactory, name: str, method: str, path: str
) -> None:
    assert make_client(name, admin_routes=False).request(method, path).status == 200


def test_the_setting_is_off_unless_enabled() -> None:
    assert Settings.from_env({}).admin_routes is False
    assert Settings.from_env({"CASCADE_ADMIN_ROUTES": "true"}).admin_routes is True
