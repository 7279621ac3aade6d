"""Dead letters for the console, through the same client and replay code as ``cascade dlq``.

Listing and showing use the dead-letter function's API (``GET /dead-letters[/<id>]``); a replay
is ``cascade dlq replay``'s own :class:`~cascade.dead_letters.replay.Replayer`, with its rules
and defaults (at most 3 replays per entry, the original event unchanged plus
``cascadereplays``, a reply posted to the broker, a trace linked to the original). A replay
needs a dry run first: the dry run answers a confirmation code bound to the entry and its
replay count, and only that code replays it, so a second click (or a replay by someone else
meanwhile) cannot replay it twice unseen.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.commands._tracing import cli_tracer
from cascade.console.topology import function_at
from cascade.dead_letters.client import (
    MAX_LIST,
    DeadLetterClient,
    DeadLetterError,
    decode_error_data,
)
from cascade.dead_letters.replay import Replayer

__all__ = ["DeadLetterError", "DeadLetters", "ReplayAnswer"]


@dataclass(frozen=True)
class ReplayAnswer:
    ok: bool
    dry_run: bool
    message: str
    confirmation: str | None = None  # after a dry run that would replay


class DeadLetters:
    """Blocking calls (run them in a thread) to the dead-letter function at ``url``."""

    def __init__(
        self,
        url: str,
        ingress: str,
        data_dir: Path,
        secret: str,
        *,
        functions: Mapping[str, str],
        timeout: float = 30.0,
    ) -> None:
        self.client = DeadLetterClient(url, timeout)
        self.data_dir = data_dir
        self.ingress = ingress
        self.functions = functions  # name -> URL: "failed at" by name
        self._secret = secret.encode()

    def _named(self, entry: dict[str, Any]) -> dict[str, Any]:
        dest = entry.get("dest")
        entry["dest_function"] = function_at(
            dest if isinstance(dest, str) else None, self.functions
        )
        return entry

    def list(self, partitionkey: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        entries = self.client.list(partitionkey=partitionkey, limit=min(limit, MAX_LIST))
        return [self._named(entry) for entry in entries]

    def show(self, dead_letter_id: int) -> dict[str, Any]:
        detail = self.client.show(dead_letter_id)
        error = detail.get("error_data")
        if isinstance(error, dict) and isinstance(error.get("base64"), str):
            detail["error_text"] = decode_error_data(error["base64"])
        return self._named(detail)

    def confirmation(self, dead_letter_id: int, replay_count: int) -> str:
        message = f"{dead_letter_id}:{replay_count}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def replay(
        self, dead_letter_id: int, *, dry_run: bool, confirmation: str | None = None
    ) -> ReplayAnswer:
        if not dry_run:
            count = int(self.show(dead_letter_id).get("replay_count", 0))
            expected = self.confirmation(dead_letter_id, count)
            if confirmation is None or not hmac.compare_digest(confirmation, expected):
                return ReplayAnswer(
                    False,
                    False,
                    "not replayed: do a dry run first and confirm what it shows (the entry may "
                    "have been replayed since)",
                )
        warnings: list[str] = []
        with cli_tracer(self.data_dir) as tracer:
            replayer = Replayer(self.client, self.ingress, tracer=tracer, warn=warnings.append)
            outcome = replayer.replay(dead_letter_id, dry_run=dry_run)
        code = None
        if dry_run and outcome.ok:
            count = int(self.show(dead_letter_id).get("replay_count", 0))
            code = self.confirmation(dead_letter_id, count)
        message = "\n".join([outcome.message, *warnings])
        return ReplayAnswer(outcome.ok, dry_run, message, code)
