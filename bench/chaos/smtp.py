"""A real SMTP server (aiosmtpd) that refuses a share of messages while told to.

Refusals are ``451 4.3.0`` (transient: the notification function retries) or, for a share of
them, ``550 5.7.1`` (permanent: the function dead-letters the event; a replay sends it). Every
accepted message is written to a SQLite mailbox with its ``X-Cascade-Order`` and
``Message-ID`` headers: the mailbox is the outside world the checks read.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from bench._servers import free_port

__all__ = ["RefusingSmtp", "mailbox_rows"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS mail (order_id TEXT, message_id TEXT, recipient TEXT,"
    " received_at REAL)"
)


class _Handler:
    def __init__(self, mailbox: Path, seed: int) -> None:
        self.mailbox = mailbox
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.refuse_rate = 0.0
        self.permanent_share = 0.0
        self.refused = {"451": 0, "550": 0}
        with sqlite3.connect(mailbox) as conn:
            conn.execute(_SCHEMA)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if self.rng.random() < self.refuse_rate:
                if self.rng.random() < self.permanent_share:
                    self.refused["550"] += 1
                    return "550 5.7.1 refused by the chaos run"
                self.refused["451"] += 1
                return "451 4.3.0 try again later (chaos run)"
        content = envelope.original_content or envelope.content
        headers = BytesHeaderParser().parsebytes(content)
        row = (
            headers.get("X-Cascade-Order"),
            headers.get("Message-ID"),
            ",".join(envelope.rcpt_tos),
            time.time(),
        )
        with sqlite3.connect(self.mailbox) as conn:
            conn.execute("INSERT INTO mail VALUES (?, ?, ?, ?)", row)
        return "250 2.0.0 OK"


class RefusingSmtp:
    """Listens on 127.0.0.1 (a free port); ``refuse(rate, permanent_share)`` sets the faults."""

    def __init__(self, mailbox: Path, seed: int) -> None:
        self.handler = _Handler(mailbox, seed)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> str:
        self.controller.start()
        return f"smtp://127.0.0.1:{self.port}"

    def refuse(self, rate: float, permanent_share: float = 0.0) -> None:
        with self.handler.lock:
            self.handler.refuse_rate = rate
            self.handler.permanent_share = permanent_share

    @property
    def refused(self) -> dict[str, int]:
        with self.handler.lock:
            return dict(self.handler.refused)

    def stop(self) -> None:
        self.controller.stop()


def mailbox_rows(mailbox: Path) -> list[tuple[str | None, str | None]]:
    """(order id, Message-ID) of every message accepted."""
    with sqlite3.connect(mailbox) as conn:
        return list(conn.execute("SELECT order_id, message_id FROM mail"))
