"""The dead-letter sink's HTTP API (see :mod:`cascade.dead_letters`), blocking calls."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson

from cascade.http_client import Answer, Unreachable, request

__all__ = [
    "DEAD_LETTER_SERVICE",
    "MAX_LIST",
    "DeadLetterClient",
    "DeadLetterError",
    "decode_error_data",
    "problem_text",
]

DEAD_LETTER_SERVICE: Final = "dead-letter"  # the sink's function name under cascade run
MAX_LIST: Final = 500


class DeadLetterError(Exception):
    """A dead-letter request failed; the message says which and why."""


@dataclass(frozen=True)
class DeadLetterClient:
    url: str  # the dead-letter sink
    timeout: float = 30.0

    def list(
        self, *, partitionkey: str | None = None, event_type: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Summaries, newest first."""
        query: dict[str, str | int] = {"limit": limit}
        if partitionkey:
            query["partitionkey"] = partitionkey
        if event_type:
            query["type"] = event_type
        document = self.get("/dead-letters?" + urlencode(query, quote_via=quote))
        entries = document.get("dead_letters") if isinstance(document, dict) else None
        return [entry for entry in entries or [] if isinstance(entry, dict)]

    def show(self, dead_letter_id: int) -> dict[str, Any]:
        """One entry with its error data and original event."""
        detail = self.get(f"/dead-letters/{dead_letter_id}")
        if not isinstance(detail, dict):
            raise DeadLetterError(f"GET /dead-letters/{dead_letter_id} did not answer an object")
        return detail

    def count_replay(self, dead_letter_id: int) -> None:
        self.post(f"/dead-letters/{dead_letter_id}/replayed")

    def get(self, path: str) -> Any:
        return _json(self._call("GET", path), f"GET {path}")

    def post(self, path: str) -> Any:
        return _json(self._call("POST", path), f"POST {path}")

    def _call(self, method: str, path: str) -> Answer:
        try:
            answer = request(method, self.url.rstrip("/") + path, timeout=self.timeout)
        except Unreachable as exc:
            raise DeadLetterError(f"{exc} (is the dead-letter function running?)") from None
        if not answer.ok:
            raise DeadLetterError(
                f"{method} {path} answered {answer.status}: {problem_text(answer)}"
            )
        return answer


def _json(answer: Answer, what: str) -> Any:
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise DeadLetterError(f"{what} did not answer JSON: {answer.text(200)!r}") from None


def problem_text(answer: Answer) -> str:
    """The ``detail`` of a problem+json answer, else the start of its body."""
    try:
        document = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return answer.text(300) or "(empty body)"
    if isinstance(document, dict) and "detail" in document:
        return str(document["detail"])
    return answer.text(300)


def decode_error_data(encoded: str) -> str:
    """``knativeerrordata``: base64 of the first KiB of the failed answer; JSON pretty-printed."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return f"(not valid base64) {encoded}"
    try:
        return orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")
