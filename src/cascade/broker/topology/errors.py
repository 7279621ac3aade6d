"""The one error a manifest problem raises, whichever layer finds it."""

from __future__ import annotations

__all__ = ["ManifestError"]


class ManifestError(Exception):
    """A manifest that cannot be loaded.

    ``str(err)`` is ``"<file>: Trigger default/orders: spec.delivery.backoffDelay: <message>"``;
    YAML-level errors carry a line instead of an object: ``"<file>:12:3: <message>"``.
    """

    def __init__(
        self,
        file: str,
        message: str,
        *,
        obj: str | None = None,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.message = message
        self.obj = obj
        self.field = field
        self.line = line
        self.column = column
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        parts = [where, *(p for p in (obj, field) if p), message]
        super().__init__(": ".join(parts))
