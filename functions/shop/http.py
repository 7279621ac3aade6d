"""HTTP helpers for the shop's plain routes (``@fn.route``): JSON bodies and problem details.

Errors are RFC 9457 ``application/problem+json`` documents, built by the runtime's own
:func:`cascade.dispatch.problem` so routes and the CloudEvents endpoint answer alike.
:func:`fail` aborts the view: the runtime then rolls back the view's store transaction.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

from flask import Request, Response, abort
from pydantic import BaseModel, ValidationError

from cascade.dispatch import problem

__all__ = ["fail", "limit_arg", "problem_response", "read_json"]

M = TypeVar("M", bound=BaseModel)


def problem_response(status: int, detail: str, **members: Any) -> Response:
    body, headers = problem(status, detail, **members)
    return Response(body, status=status, headers=headers)


def fail(status: int, detail: str, **members: Any) -> NoReturn:
    """Answer ``status`` with a problem document now (the transaction is rolled back)."""
    abort(problem_response(status, detail, **members))


def read_json(request: Request, model: type[M], what: str) -> M:
    """The body validated into ``model`` (strict: no "3" for 3, no unknown fields).

    415 when it is not sent as JSON, 400 when it is empty or not well-formed JSON, 422 with one
    entry per problem (``field`` as a dotted path, ``message``) when it does not fit ``model``.
    """
    if request.mimetype != "application/json":
        shown = request.mimetype or "no Content-Type"
        fail(415, f"send the {what} as application/json (got {shown})")
    body = request.get_data(cache=False)
    if not body.strip():
        fail(400, f"the body is empty; send the {what} as a JSON object")
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        malformed = [e for e in errors if e["type"] == "json_invalid"]
        if malformed:
            fail(400, f"the body is not well-formed JSON: {malformed[0]['msg']}")
        fail(
            422,
            f"the {what} is invalid: "
            + "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors[:5])
            + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""),
            errors=[
                {"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in errors
            ],
        )


def limit_arg(request: Request, default: int, maximum: int) -> int:
    """The ``limit`` query parameter: a whole number from 1 to ``maximum`` (else 400)."""
    raw = request.args.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        fail(400, f"limit must be a whole number from 1 to {maximum}, got {raw!r}")
    return int(raw)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"
