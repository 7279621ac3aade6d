"""Issue 10, row 10 ("small ones"): a seed past its column, address lists, SMTP login without
TLS and a password in a startup error, and a gzip bomb sent to the trace receiver."""

from __future__ import annotations

import gzip
import http.client
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from cascade.testing import FunctionClient
from cascade.traces.receiver import MAX_BODY_BYTES, TraceReceiver
from cascade.traces.store import STORE_FILE, SpanStore
from functions.notification.mailer import MailSettings, PermanentMailError, compose, deliver
from functions.shop import samples
from tests.functions.conftest import ClientFactory
from tests.functions.test_notification import free_port

PASSWORD = "s3cret-Pa55"


def test_a_seed_past_its_column_is_422_not_500(
    make_client: ClientFactory, database_url: str | None
) -> None:
    payment = make_client("payment", database_url=database_url)
    for seed in (2**63, 2**31, -1):
        answer = payment.request("PUT", "/faults", json={"seed": seed})
        assert answer.status == 422, (seed, answer.status, answer.body)
        assert b"seed" in answer.body
    kept = payment.request("PUT", "/faults", json={"seed": 2**31 - 1})
    assert kept.status == 200, kept.body
    assert orjson.loads(kept.body)["seed"] == 2**31 - 1


@pytest.mark.parametrize(
    "email",
    # Each passes a one-@ pattern, and each is two recipients to an SMTP library.
    ["eve,ada@example.com", "eve;ada@example.com", "ada@example.com,eve", "ada@example.com;eve"],
)
def test_an_address_list_is_refused_where_it_enters(make_client: ClientFactory, email: str) -> None:
    order = make_client("order")
    answer = order.request(
        "POST",
        "/orders",
        json={"customer": {"id": "ada", "email": email}, "items": [{"sku": "MUG", "quantity": 1}]},
    )
    assert answer.status == 422, answer.body
    # and an event carrying one is dead-lettered by notification, never mailed to two people
    notification = make_client("notification")
    event = samples.order_confirmed("o-list-1", {"MUG": 1}).model_dump(mode="json")
    event["customer"]["email"] = email
    result = notification.post(
        {
            "ce-specversion": "1.0",
            "ce-id": "list-1",
            "ce-source": "/test",
            "ce-type": "com.example.shop.order.confirmed",
            "content-type": "application/json",
        },
        orjson.dumps(event),
    )
    assert result.status == 422, result.body


class Recorder:
    def __init__(self) -> None:
        self.logins: list[str] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


class Authenticator:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.recorder.logins.append(auth.password.decode())
        return AuthResult(success=True)


@pytest.fixture
def plain_smtp() -> Iterator[tuple[Recorder, int]]:
    """An SMTP server that offers AUTH without TLS (and no STARTTLS): a password sent to it
    travels in the clear."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=Authenticator(recorder),
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def test_smtp_never_logs_in_without_starttls_unless_the_url_says_so(
    plain_smtp: tuple[Recorder, int], tmp_path: Path
) -> None:
    recorder, port = plain_smtp
    event = samples.order_confirmed("o-list-1", {"MUG": 1})
    settings = MailSettings.from_env({"SMTP_URL": f"smtp://shop:{PASSWORD}@127.0.0.1:{port}"})
    with pytest.raises(PermanentMailError) as refused:
        deliver(compose(event, settings), event.order_id, settings)
    assert "STARTTLS" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert recorder.logins == []  # the password never left
    explicit = MailSettings.from_env(
        {"SMTP_URL": f"smtp://shop:{PASSWORD}@127.0.0.1:{port}?starttls=off"}
    )
    where = deliver(compose(event, explicit), event.order_id, explicit)
    assert PASSWORD not in where
    assert recorder.logins == [PASSWORD]
    assert recorder.recipients == [[event.customer.email]]


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://shop:{PASSWORD}@mail.example.com:99999",
        f"http://shop:{PASSWORD}@mail.example.com",
        f"smtp://shop:{PASSWORD}@mail.example.com?starttls=maybe",
    ],
)
def test_a_bad_smtp_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL") as bad:
        MailSettings.from_env({"SMTP_URL": url})
    assert PASSWORD not in str(bad.value)


def test_a_gzip_bomb_is_413_with_bounded_memory(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (MAX_BODY_BYTES * 25), compresslevel=9)  # ~400 MiB inflated
    assert len(bomb) < 1024 * 1024
    with SpanStore(tmp_path / STORE_FILE) as store:
        receiver = TraceReceiver(store)
        receiver.start()
        try:
            tracemalloc.start()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=30)
                connection.request(
                    "POST",
                    "/v1/traces",
                    body=bomb,
                    headers={
                        "Content-Type": "application/x-protobuf",
                        "Content-Encoding": "gzip",
                    },
                )
                answer = connection.getresponse()
                status, text = answer.status, answer.read()
                connection.close()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        finally:
            receiver.close()
    assert status == 413, text
    assert b"decompressed" in text
    assert peak < 4 * MAX_BODY_BYTES, f"peak {peak / 2**20:.0f} MiB while refusing the bomb"


def test_a_client_sees_the_seed_bound_in_the_problem(make_client: ClientFactory) -> None:
    payment: FunctionClient = make_client("payment")
    problem = payment.request("PUT", "/faults", json={"seed": 2**63}).problem
    assert problem is not None
    assert any(e["field"] == "seed" for e in problem["errors"])
