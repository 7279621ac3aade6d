"""notification: one email per final order, as an .eml file or through a real SMTP server
(aiosmtpd on 127.0.0.1), under redelivery and duplicates; transient and permanent failures."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from cascade.testing import FunctionClient
from functions.notification.mailer import MailSettings
from functions.shop import samples
from functions.shop.events import Customer
from tests.functions.conftest import ClientFactory, body


class Recorder:
    """An aiosmtpd handler that keeps what it accepts and refuses listed recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@pytest.fixture
def client(make_client: ClientFactory) -> FunctionClient:
    return make_client("notification")


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"  # NOTIFICATION_OUTBOX, set by the autouse fixture


def read(path: Path) -> Message:
    return email.message_from_bytes(path.read_bytes())


def test_confirmed_order_is_written_to_the_outbox(client: FunctionClient, outbox: Path) -> None:
    result = client.send(samples.order_confirmed("n-1", {"MUG": 2, "POSTER": 1}))
    assert result.status == 204
    [path] = outbox.iterdir()
    assert path.name == "n-1.eml"
    message = read(path)
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Cascade Shop <shop@example.com>"
    assert message["Subject"] == "Your order n-1 is confirmed"
    assert message["Message-ID"] == "<order-n-1@example.com>"
    text = message.get_payload()
    assert isinstance(text, str)
    assert "2 x MUG at 12.50" in text
    assert "total: 34.00 EUR" in text
    sent = body(client.get("/notifications/n-1"))
    assert sent["kind"] == "confirmed"
    assert sent["delivered_to"] == str(path)
    assert sent["message_id"] == "<order-n-1@example.com>"


def test_cancelled_order_email_says_why(client: FunctionClient, outbox: Path) -> None:
    event = samples.order_cancelled("n-2", {"VINYL": 1}).model_copy(
        update={"detail": "out of stock: VINYL (requested 1, available 0)"}
    )
    assert client.send(event).status == 204
    message = read(outbox / "n-2.eml")
    assert message["Subject"] == "Your order n-2 was cancelled"
    assert "out of stock: VINYL" in str(message.get_payload())


def test_one_email_per_order_under_redelivery_and_duplicates(
    client: FunctionClient, outbox: Path
) -> None:
    event = samples.order_confirmed("n-3", {"MUG": 1})
    client.send(event, event_id="e-1")
    first = (outbox / "n-3.eml").read_bytes()
    client.send(event, event_id="e-1")  # the broker redelivers
    client.send(event, event_id="e-2")  # the same news, another event
    client.send(samples.order_cancelled("n-3", {"MUG": 1}))  # cannot happen; still one mail
    assert [p.name for p in outbox.iterdir()] == ["n-3.eml"]
    assert (outbox / "n-3.eml").read_bytes() == first
    assert body(client.get("/notifications/n-3"))["event_id"] == "e-1"


def test_an_unwritable_outbox_is_retried(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("NOTIFICATION_OUTBOX", str(blocked / "outbox"))
    result = client.send(samples.order_confirmed("n-4", {"MUG": 1}), event_id="e-4")
    assert result.status == 503
    assert client.get("/notifications/n-4").status == 404  # nothing recorded: it will retry
    monkeypatch.setenv("NOTIFICATION_OUTBOX", str(tmp_path / "outbox"))
    assert client.send(samples.order_confirmed("n-4", {"MUG": 1}), event_id="e-4").status == 204
    assert (tmp_path / "outbox" / "n-4.eml").exists()


def test_sends_by_smtp_once(
    client: FunctionClient,
    smtp: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
    outbox: Path,
) -> None:
    recorder, port = smtp
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("NOTIFICATION_FROM", "orders@shop.test")
    event = samples.order_confirmed("n-5", {"TSHIRT": 1})
    assert client.send(event, event_id="e-5").status == 204
    assert client.send(event, event_id="e-5").status == 204
    assert client.send(event, event_id="e-6").status == 204
    [(sender, recipients, content)] = recorder.messages
    assert (sender, recipients) == ("orders@shop.test", ["ada@example.com"])
    message = email.message_from_bytes(content)
    assert message["Message-ID"] == "<order-n-5@shop.test>"
    assert message["Subject"] == "Your order n-5 is confirmed"
    assert not outbox.exists()
    assert body(client.get("/notifications/n-5"))["delivered_to"] == f"smtp://127.0.0.1:{port}"


def test_smtp_down_is_retried_until_it_is_back(
    client: FunctionClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens here yet
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("SMTP_TIMEOUT", "5")
    event = samples.order_cancelled("n-6", {"MUG": 1})
    result = client.send(event, event_id="e-7")
    assert result.status == 503
    assert result.headers["Retry-After"] == "5"
    assert client.get("/notifications/n-6").status == 404
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        assert client.send(event, event_id="e-7").status == 204
    finally:
        controller.stop()
    assert len(recorder.messages) == 1


def test_a_refused_recipient_goes_to_the_dead_letter_sink(
    client: FunctionClient, smtp: tuple[Recorder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp
    recorder.refuse["nobody@example.com"] = "550 5.1.1 no such user"
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
    event = samples.order_confirmed(
        "n-7", {"MUG": 1}, Customer(id="cust-x", email="nobody@example.com")
    )
    result = client.send(event)
    assert result.status == 422
    assert "550" in result.headers["Kne-Reason"]
    assert recorder.messages == []
    assert client.get("/notifications/n-7").status == 404


def test_a_busy_recipient_is_retried(
    client: FunctionClient, smtp: tuple[Recorder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp
    recorder.refuse["busy@example.com"] = "450 4.2.1 mailbox busy"
    monkeypatch.setenv("SMTP_URL", f"smtp://127.0.0.1:{port}")
    event = samples.order_confirmed(
        "n-8", {"MUG": 1}, Customer(id="cust-y", email="busy@example.com")
    )
    assert client.send(event).status == 503


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SMTP_URL", "http://mail.example.com"),
        ("SMTP_URL", "smtp://"),
        ("SMTP_URL", "smtp://mail.example.com:99999"),
        ("SMTP_TIMEOUT", "soon"),
        ("SMTP_TIMEOUT", "0"),
        ("NOTIFICATION_FROM", "shop"),
    ],
)
def test_bad_mail_settings_are_named(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        MailSettings.from_env({variable: value})


def test_mail_settings_defaults() -> None:
    settings = MailSettings.from_env({})
    assert settings == MailSettings(Path(".cascade/outbox"), None, "shop@example.com", 10.0)
