"""`cascade run --oidc`: an order is confirmed with a token on every hop; nothing else gets in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    ShopRun,
    get_json,
    place_order,
    run_cli,
    running_shop,
    wait_until,
)
from tests.http_call import call

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EVENT = {
    "ce-specversion": "1.0",
    "ce-source": "/mallory",
    "ce-type": "com.example.shop.inventory.reserved",
    "Content-Type": "application/json",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopRun]:
    yield from running_shop(tmp_path_factory.mktemp("oidc"), "--oidc")


def send_ping(shop: ShopRun, *options: str) -> tuple[int, str]:
    result = run_cli(
        "send",
        "--data-dir",
        str(shop.data_dir),
        "--type",
        "com.example.test.ping",
        "--source",
        "/cli",
        "--data",
        "{}",
        "--oidc",
        *options,
    )
    return result.returncode, result.stdout + result.stderr


def refusals(url: str) -> float:
    text = call("GET", f"{url}/metrics").body.decode()
    lines = [line for line in text.splitlines() if line.startswith("cascade_sender_refusals_total")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_an_order_is_confirmed_with_tokens_on_every_hop(shop: ShopRun) -> None:
    order = place_order(shop.url("order"), [("MUG", 1)])

    def confirmed() -> bool | None:
        return get_json(f"{shop.url('order')}/orders/{order}")["state"] == "CONFIRMED" or None

    wait_until(confirmed, 60, "the order to be confirmed")
    # Every function checked every delivery and refused none of the chain's own.
    for name in ("order", "inventory", "payment", "notification", "dead-letter"):
        assert refusals(shop.url(name)) == 0, name


def test_a_forged_delivery_to_a_function_is_refused(shop: ShopRun) -> None:
    payment = shop.url("payment")
    answer = call("POST", f"{payment}/", b"{}", {**EVENT, "ce-id": str(uuid.uuid4())})
    assert answer.status == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert refusals(payment) == 1


def test_the_broker_takes_events_only_from_identified_senders(shop: ShopRun) -> None:
    headers = {**EVENT, "ce-id": str(uuid.uuid4())}
    assert call("POST", shop.ingress, b"{}", headers).status == 401
    code, output = send_ping(shop)
    assert code == 0, output
    assert "202" in output
    code, output = send_ping(shop, "--as", "system:serviceaccount:other:intruder")
    assert code == 1
    assert "403" in output


def test_the_issuer_key_and_tokens_are_owner_only(shop: ShopRun) -> None:
    oidc = shop.data_dir / "oidc"
    for path in (oidc / "issuer-key.pem", oidc / "tokens" / "order.jwt"):
        assert path.stat().st_mode & 0o077 == 0, path
    discovery = json.loads(
        call("GET", f"{shop.broker}/-/oidc/.well-known/openid-configuration").body
    )
    assert discovery["issuer"] == f"{shop.broker}/-/oidc"


def test_send_oidc_without_a_key_says_how_to_get_one(tmp_path: Path) -> None:
    result = run_cli("send", "--data-dir", str(tmp_path), "--type", "t", "--source", "/s", "--oidc")
    assert result.returncode == 2
    assert "cascade run --oidc" in result.stderr
