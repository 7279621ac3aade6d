"""Compose and deliver the shop's emails: an ``.eml`` file in an outbox folder, or SMTP.

Settings (read from the environment at each delivery, checked once at start):

- ``SMTP_URL``: ``smtp://[user:password@]host[:port]`` (port 25) or ``smtps://...`` (TLS, 465).
  With a user on ``smtp://`` the connection is upgraded with STARTTLS before the login, and a
  server that does not offer it is an error; only ``?starttls=off`` in the URL sends the
  password in the clear. Unset: write ``<NOTIFICATION_OUTBOX>/<order id>.eml`` instead (default
  ``$CASCADE_DATA_DIR/outbox``, else ``.cascade/outbox``).
- ``NOTIFICATION_FROM``: the sender (default ``shop@example.com``).
- ``SMTP_TIMEOUT``: seconds per SMTP conversation (default 10).

Every recipient is one address checked by ``email-validator`` (no lists: ``a@x.org, b@y.org``
is refused, never split into two recipients), and no message (error, log, ``delivered_to``)
carries the URL's password.

A delivery either succeeds, or raises :class:`TransientMailError` (try again later: connection
problems, 4xx replies) or :class:`PermanentMailError` (5xx replies: retrying will not help).
"""

from __future__ import annotations

import os
import smtplib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from functions.shop.email_address import one_address
from functions.shop.events import OrderCancelled, OrderConfirmed
from functions.shop.prices import PRICES

__all__ = [
    "MailSettings",
    "PermanentMailError",
    "TransientMailError",
    "compose",
    "deliver",
    "without_password",
]

DEFAULT_OUTBOX = ".cascade/outbox"
DEFAULT_SENDER = "shop@example.com"


class TransientMailError(Exception):
    """The email was not sent, and trying again later may work."""


class PermanentMailError(Exception):
    """The email was refused for good (a 5xx SMTP reply)."""


def without_password(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _starttls_off(url: str) -> bool:
    values = parse_qs(urlsplit(url).query).get("starttls", [])
    if values and values[-1] not in ("on", "off"):
        raise ValueError(f"SMTP_URL={without_password(url)!r}: starttls must be on or off")
    return values[-1:] == ["off"]


@dataclass(frozen=True)
class MailSettings:
    outbox: Path = Path(DEFAULT_OUTBOX)
    smtp_url: str | None = None
    sender: str = DEFAULT_SENDER
    timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MailSettings:
        env = os.environ if environ is None else environ
        smtp_url = env.get("SMTP_URL", "").strip() or None
        if smtp_url is not None:
            shown = without_password(smtp_url)
            parts = urlsplit(smtp_url)
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise ValueError(f"SMTP_URL={shown!r}: use smtp://host:port or smtps://host:port")
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError:
                raise ValueError(f"SMTP_URL={shown!r}: the port is not 0-65535") from None
            _starttls_off(smtp_url)
        raw_timeout = env.get("SMTP_TIMEOUT", "").strip() or "10"
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ValueError(f"SMTP_TIMEOUT={raw_timeout!r}: not a number") from None
        if not timeout > 0:
            raise ValueError(f"SMTP_TIMEOUT={raw_timeout!r}: must be > 0")
        sender = env.get("NOTIFICATION_FROM", "").strip() or DEFAULT_SENDER
        try:
            one_address(sender)
        except ValueError as exc:
            raise ValueError(f"NOTIFICATION_FROM={sender!r}: {exc}") from None
        # Beside the function's other state (cascade run sets CASCADE_DATA_DIR per run).
        data_dir = env.get("CASCADE_DATA_DIR", "").strip()
        default = str(Path(data_dir) / "outbox") if data_dir else DEFAULT_OUTBOX
        outbox = Path(env.get("NOTIFICATION_OUTBOX", "").strip() or default)
        return cls(outbox, smtp_url, sender, timeout)

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]


def compose(event: OrderConfirmed | OrderCancelled, settings: MailSettings) -> EmailMessage:
    """The email about a final order. Its Message-ID depends only on the order, so a resent
    copy is recognisably the same message."""
    message = EmailMessage()
    message["From"] = f"Cascade Shop <{settings.sender}>"
    message["To"] = one_address(event.customer.email)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<order-{event.order_id}@{settings.domain}>"
    message["X-Cascade-Order"] = event.order_id
    lines = [f"Hello {event.customer.id},", ""]
    if isinstance(event, OrderConfirmed):
        message["Subject"] = f"Your order {event.order_id} is confirmed"
        lines.append(f"your order {event.order_id} is confirmed:")
        lines.append("")
        for item in event.items:
            unit = PRICES.get(item.sku)
            price = f" at {unit / 100:.2f}" if unit is not None else ""
            lines.append(f"  {item.quantity} x {item.sku}{price}")
        lines.append(f"  total: {event.amount_cents / 100:.2f} {event.currency}")
    else:
        message["Subject"] = f"Your order {event.order_id} was cancelled"
        lines.append(f"we are sorry: your order {event.order_id} was cancelled.")
        lines.append(f"Reason: {event.detail}")
        lines.append("Nothing was charged.")
    lines += ["", "Thank you for shopping with us."]
    message.set_content("\n".join(lines) + "\n")
    return message


def deliver(message: EmailMessage, order_id: str, settings: MailSettings) -> str:
    """Send ``message``; returns where it went (an SMTP URL without credentials, or a path)."""
    if settings.smtp_url is None:
        return str(_write(message, settings.outbox / f"{order_id}.eml"))
    return _send(message, settings)


def _write(message: EmailMessage, path: Path) -> Path:
    # Write-then-rename: a reader never sees half a message, and a second delivery of the same
    # order replaces the file instead of adding one.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(message.as_bytes())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise TransientMailError(f"cannot write {path}: {exc}") from None
    return path


def _send(message: EmailMessage, settings: MailSettings) -> str:
    assert settings.smtp_url is not None
    parts = urlsplit(settings.smtp_url)
    host = parts.hostname or ""
    secure = parts.scheme == "smtps"
    port = parts.port or (465 if secure else 25)
    where = f"{parts.scheme}://{host}:{port}"
    client = smtplib.SMTP_SSL if secure else smtplib.SMTP
    # One envelope recipient, checked again here: the To header is never re-parsed into several.
    recipient = one_address(str(message["To"]))
    try:
        with client(host, port, timeout=settings.timeout_seconds) as smtp:
            if parts.username:
                if not secure and not _starttls_off(settings.smtp_url):
                    _starttls(smtp, where)
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(message, from_addr=settings.sender, to_addrs=[recipient])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        problem = f"{where} refused {', '.join(exc.recipients)}: {sorted(codes)}"
        if all(code >= 500 for code in codes):
            raise PermanentMailError(problem) from None
        raise TransientMailError(problem) from None
    except smtplib.SMTPResponseException as exc:
        problem = f"{where} answered {exc.smtp_code} {exc.smtp_error!r}"
        if exc.smtp_code >= 500:
            raise PermanentMailError(problem) from None
        raise TransientMailError(problem) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientMailError(f"{where}: {type(exc).__name__}: {exc}") from None
    return where


def _starttls(smtp: smtplib.SMTP, where: str) -> None:
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        # Configuration, not a passing fault: the password would go out in the clear.
        raise PermanentMailError(
            f"{where} does not offer STARTTLS; refusing to send the password in the clear "
            "(add ?starttls=off to SMTP_URL to allow it)"
        )
    smtp.starttls()
    smtp.ehlo()
