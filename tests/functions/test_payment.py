"""payment: the gateway rules, one decision per order, and fault injection that is switchable at
runtime and deterministic (same seed, same events fail on the same deliveries)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cascade.testing import FunctionClient
from functions.payment.faults import Faults, roll
from functions.payment.gateway import GatewayRules
from functions.shop import samples
from functions.shop.events import Customer, PaymentAuthorized, PaymentDeclined
from functions.shop.prices import PRICES
from tests.functions.conftest import ClientFactory, body
from tests.shop import load

payment = load("payment")
BLOCKED = Customer(id="cust-blocked", email="blocked@example.com")


@pytest.fixture
def client(make_client: ClientFactory) -> FunctionClient:
    return make_client("payment")


def put_faults(client: FunctionClient, **setting: Any) -> dict[str, Any]:
    result = client.request("PUT", "/faults", json=setting)
    assert result.status == 200, result.body
    document: dict[str, Any] = body(result)
    return document


def test_authorizes_the_priced_amount(client: FunctionClient) -> None:
    result = client.send(samples.inventory_reserved("p-1", {"MUG": 2, "POSTER": 1}))
    assert result.status == 200
    reply = result.reply(PaymentAuthorized)
    assert reply.amount_cents == 2 * PRICES["MUG"] + PRICES["POSTER"]
    assert reply.currency == "EUR"
    assert reply.authorization_id.startswith("auth-")
    assert result.attributes["partitionkey"] == "p-1"
    decision = body(client.get("/payments/p-1"))
    assert decision["status"] == "AUTHORIZED"
    assert decision["authorization_id"] == reply.authorization_id


def test_blocked_customer_is_declined(client: FunctionClient) -> None:
    reply = client.send(samples.inventory_reserved("p-2", {"MUG": 1}, BLOCKED)).reply(
        PaymentDeclined
    )
    assert (reply.reason, reply.amount_cents) == ("customer_blocked", PRICES["MUG"])
    assert "cust-blocked" in reply.message


def test_amount_over_the_limit_is_declined(client: FunctionClient) -> None:
    assert PRICES["LAPTOP"] > GatewayRules().limit_cents
    reply = client.send(samples.inventory_reserved("p-3", {"LAPTOP": 1})).reply(PaymentDeclined)
    assert reply.reason == "amount_over_limit"
    assert body(client.get("/payments/p-3"))["status"] == "DECLINED"


def test_rules_come_from_the_environment(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENT_LIMIT_CENTS", str(PRICES["MUG"] - 1))
    monkeypatch.setenv("PAYMENT_BLOCKED_CUSTOMERS", "someone, cust-ada")
    reply = client.send(samples.inventory_reserved("p-4", {"STICKER": 1})).reply(PaymentDeclined)
    assert reply.reason == "customer_blocked"
    monkeypatch.setenv("PAYMENT_BLOCKED_CUSTOMERS", "")
    reply = client.send(samples.inventory_reserved("p-5", {"MUG": 1})).reply(PaymentDeclined)
    assert reply.reason == "amount_over_limit"


def test_rules_order_and_bad_values() -> None:
    rules = GatewayRules(limit_cents=100, blocked_customers=frozenset({"x"}))
    assert rules.decide("y", 100) is None
    decline = rules.decide("x", 1000)
    assert decline is not None
    assert decline.reason == "customer_blocked"  # checked before the amount
    with pytest.raises(ValueError, match="PAYMENT_LIMIT_CENTS"):
        GatewayRules.from_env({"PAYMENT_LIMIT_CENTS": "ten"})
    with pytest.raises(ValueError, match="PAYMENT_LIMIT_CENTS"):
        GatewayRules.from_env({"PAYMENT_LIMIT_CENTS": "-5"})


def test_one_decision_per_order(client: FunctionClient) -> None:
    first = client.send(samples.inventory_reserved("p-6", {"MUG": 1})).reply(PaymentAuthorized)
    again = client.send(samples.inventory_reserved("p-6", {"LAPTOP": 1}))  # new event id
    assert again.status == 204
    assert body(client.get("/payments/p-6"))["authorization_id"] == first.authorization_id


def test_an_unpriced_sku_is_dead_lettered(client: FunctionClient) -> None:
    result = client.send(samples.inventory_reserved("p-7", {"FREEBIE": 1}))
    assert result.status == 422
    assert "FREEBIE" in result.headers["Kne-Reason"]
    assert client.get("/payments/p-7").status == 404


# --------------------------------------------------------------------------- fault settings


def test_fault_setting_defaults_come_from_the_environment(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert body(client.get("/faults")) == {
        "rate": 0.0,
        "mode": "error",
        "hang_seconds": 5.0,
        "seed": 0,
        "origin": "environment",
        "updated_at": None,
    }
    monkeypatch.setenv("PAYMENT_FAULT_RATE", "0.25")
    monkeypatch.setenv("PAYMENT_FAULT_MODE", "hang")
    monkeypatch.setenv("PAYMENT_HANG_SECONDS", "3")
    monkeypatch.setenv("PAYMENT_FAULT_SEED", "9")
    document = body(client.get("/faults"))
    assert (document["rate"], document["mode"], document["hang_seconds"], document["seed"]) == (
        0.25,
        "hang",
        3.0,
        9,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAYMENT_FAULT_RATE", "often"),
        ("PAYMENT_FAULT_RATE", "1.5"),
        ("PAYMENT_FAULT_MODE", "explode"),
        ("PAYMENT_HANG_SECONDS", "0"),
        ("PAYMENT_FAULT_SEED", "x"),
    ],
)
def test_a_bad_fault_variable_is_named(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Faults.from_env({variable: value})


def test_put_faults_switches_at_runtime_and_delete_goes_back(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENT_HANG_SECONDS", "4")
    document = put_faults(client, rate=1, seed=3)
    assert document["origin"] == "api"
    assert (document["rate"], document["mode"], document["hang_seconds"], document["seed"]) == (
        1.0,
        "error",
        4.0,  # left out: the environment's default
        3,
    )
    assert body(client.get("/faults")) == document
    failed = client.send(samples.inventory_reserved("p-8", {"MUG": 1}), event_id="e-8")
    assert failed.status == 503
    assert "injected" in failed.problem["detail"]  # type: ignore[index]
    assert client.get("/payments/p-8").status == 404  # nothing decided, nothing stored

    reset = client.request("DELETE", "/faults")
    assert body(reset)["origin"] == "environment"
    retried = client.send(samples.inventory_reserved("p-8", {"MUG": 1}), event_id="e-8")
    assert retried.status == 200


@pytest.mark.parametrize(
    ("payload", "content_type", "status", "field"),
    [
        (b'{"rate": 2}', "application/json", 422, "rate"),
        (b'{"rate": "0.5"}', "application/json", 422, "rate"),
        (b'{"mode": "explode"}', "application/json", 422, "mode"),
        (b'{"hang_seconds": -1}', "application/json", 422, "hang_seconds"),
        (b'{"hang_seconds": 31}', "application/json", 422, "hang_seconds"),
        (b'{"rates": 0.5}', "application/json", 422, "rates"),
        (b"[]", "application/json", 422, "(body)"),
        (b'{"rate": ', "application/json", 400, None),
        (b"", "application/json", 400, None),
        (b"rate=1", "application/x-www-form-urlencoded", 415, None),
    ],
)
def test_put_faults_refuses_bad_settings(
    client: FunctionClient, payload: bytes, content_type: str, status: int, field: str | None
) -> None:
    result = client.request("PUT", "/faults", data=payload, headers={"Content-Type": content_type})
    assert result.status == status
    problem = result.problem
    assert problem is not None
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]]
    assert body(client.get("/faults"))["origin"] == "environment"  # nothing was stored


# --------------------------------------------------------------------------- fault injection


def deliveries_until_success(client: FunctionClient, orders: int, limit: int = 10) -> list[int]:
    """For each order, on which delivery the payment got through (redelivering on 503)."""
    needed = []
    for n in range(orders):
        event = samples.inventory_reserved(f"f-{n}", {"STICKER": 1})
        for delivery in range(1, limit + 1):
            result = client.send(event, event_id=f"event-{n}", source="/inventory")
            if result.status == 200:
                needed.append(delivery)
                break
            assert result.status == 503
        else:
            needed.append(0)
    return needed


def predicted(seed: int, rate: float, orders: int, limit: int = 10) -> list[int]:
    needed = []
    for n in range(orders):
        for delivery in range(1, limit + 1):
            if roll(seed, "/inventory", f"event-{n}", delivery) >= rate:
                needed.append(delivery)
                break
        else:
            needed.append(0)
    return needed


def test_faults_are_deterministic_per_event_and_delivery(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    runs = []
    for run in range(2):
        client = make_client("payment", data_dir=tmp_path / f"run-{run}")  # a fresh store
        put_faults(client, rate=0.5, seed=7)
        runs.append(deliveries_until_success(client, 20))
        client.close()
    assert runs[0] == runs[1] == predicted(7, 0.5, 20)
    assert any(n > 1 for n in runs[0]), "with rate 0.5 some events must need a retry"
    assert 1 in runs[0], "with rate 0.5 some events must pass at once"
    assert predicted(8, 0.5, 20) != runs[0]  # the seed chooses which ones fail


def test_rate_one_fails_every_delivery_and_zero_none(client: FunctionClient) -> None:
    put_faults(client, rate=1)
    assert deliveries_until_success(client, 3, limit=4) == [0, 0, 0]
    put_faults(client, rate=0)
    assert deliveries_until_success(client, 3, limit=4) == [1, 1, 1]


def test_hang_mode_sleeps_then_answers(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(payment, "sleep", slept.append)
    put_faults(client, rate=1, mode="hang", hang_seconds=7.5)
    result = client.send(samples.inventory_reserved("p-9", {"MUG": 1}))
    assert slept == [7.5]
    assert result.status == 200  # a slow gateway still answers; the broker has given up by then
    # The broker's retry of the same event gets the stored reply, without a second hang.
    again = client.send(samples.inventory_reserved("p-9", {"MUG": 1}))
    assert again.status == 204  # a new id for a decided order
    assert slept == [7.5]


def test_attempts_are_counted_beside_the_store(client: FunctionClient) -> None:
    put_faults(client, rate=1)
    for _ in range(3):
        client.send(samples.inventory_reserved("p-10", {"MUG": 1}), event_id="e-10")
    ledger = payment.ledger_for(client.runtime.store.engine)
    assert ledger.next_attempt("/cascade/testing", "e-10") == 4
    assert Path(str(ledger.engine.url.database)).name == "payment-attempts.sqlite3"
