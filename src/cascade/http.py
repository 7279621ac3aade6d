"""Helpers for a function's plain HTTP routes (``@fn.route``): bodies, JSON, problem details.

```python
from cascade.http import fail, read_json

@fn.route("/orders", methods=["POST"])
def place(ctx: HttpContext) -> Any:
    order = read_json(ctx.request, NewOrder, "order")   # 415 / 400 / 413 / 422 as problems
    if order.total > LIMIT:
        fail(422, "over the limit")                      # the view's transaction rolls back
    ...
```

Every error is an RFC 9457 ``application/problem+json`` document, the same shape the
CloudEvents endpoint answers with. Bodies are read with the runtime's limit
(``CASCADE_MAX_BODY_BYTES``) whether they come with a ``Content-Length`` or chunked: a body
over the limit is a 413, never silently cut short.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NoReturn, TypeVar

import orjson
from flask import Request, Response, abort, current_app
from pydantic import BaseModel, ValidationError

__all__ = [
    "PROBLEM_JSON",
    "BodyError",
    "fail",
    "limit_arg",
    "problem",
    "problem_response",
    "read_body",
    "read_json",
    "read_limited",
]

PROBLEM_JSON: Final = "application/problem+json"

M = TypeVar("M", bound=BaseModel)

_TITLES: Final = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class BodyError(ValueError):
    """A request body that cannot be read whole: ``status`` is 400 or 413."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def problem(status: int, detail: str, **members: Any) -> tuple[bytes, dict[str, str]]:
    """An RFC 9457 problem-details body and its headers; ``members`` set to None are left out."""
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    document.update({k: v for k, v in members.items() if v is not None})
    return orjson.dumps(document), {"Content-Type": PROBLEM_JSON}


def problem_response(status: int, detail: str, **members: Any) -> Response:
    """A Flask response carrying :func:`problem` (return it from a view)."""
    body, headers = problem(status, detail, **members)
    return Response(body, status=status, headers=headers)


def fail(status: int, detail: str, **members: Any) -> NoReturn:
    """Answer ``status`` with a problem document now; the view's store transaction rolls back."""
    abort(problem_response(status, detail, **members))


def read_limited(environ: Mapping[str, Any], max_body: int) -> bytes:
    """The whole request body from the WSGI input, at most ``max_body`` bytes.

    Raises :class:`BodyError` (413) past the limit, by ``Content-Length`` or, for a chunked
    body, by reading one byte more than allowed; 400 for a bad or unmet ``Content-Length`` and
    for a body the server cannot read (broken chunked framing, a client gone mid-body).
    """
    stream = environ["wsgi.input"]
    raw_length = environ.get("CONTENT_LENGTH")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if raw_length and not chunked:
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            raise BodyError(400, f"invalid Content-Length {raw_length!r}")
        if length > max_body:
            raise BodyError(413, f"body of {length} bytes exceeds the {max_body}-byte limit")
        body = _read(stream, length) if length else b""
        if len(body) != length:
            raise BodyError(400, f"body ended after {len(body)} of {length} bytes")
        return body
    if environ.get("wsgi.input_terminated"):
        # The server de-chunks; werkzeug's own reader would stop at the limit without a word.
        body = _read(stream, max_body + 1)
        if len(body) > max_body:
            raise BodyError(413, f"body exceeds the {max_body}-byte limit")
        return body
    return b""  # no length and no terminated stream: nothing can be read safely


def _read(stream: Any, size: int) -> bytes:
    try:
        data: bytes = stream.read(size)
    except Exception as exc:
        # The WSGI server's own reader raises its own types for a body the client framed
        # wrongly or did not finish (gunicorn: InvalidChunkSize, ChunkMissingTerminator,
        # NoMoreData): the client's fault, a 400, never a 500.
        raise BodyError(400, f"the body could not be read: {type(exc).__name__}") from None
    return data


def read_body(request: Request, max_body: int | None = None) -> bytes:
    """The request's body, whole, or a 413/400 problem (``max_body`` defaults to the
    runtime's ``CASCADE_MAX_BODY_BYTES``). Read it once: the stream is consumed."""
    if max_body is None:
        max_body = int(current_app.config["MAX_CONTENT_LENGTH"])
    try:
        return read_limited(request.environ, max_body)
    except BodyError as exc:
        fail(exc.status, exc.detail)


def read_json(request: Request, model: type[M], what: str = "body") -> M:
    """The body validated into ``model`` (strict: no "3" for 3; ``extra="forbid"`` on the
    model refuses unknown fields).

    415 when it is not sent as ``application/json``, 413 past the size limit, 400 when it is
    empty or not well-formed JSON, 422 with one entry per problem (``field`` as a dotted
    path, ``message``, ``type``) when it does not fit ``model``. ``what`` names the body in
    the messages ("the order is invalid: ...").
    """
    if request.mimetype != "application/json":
        shown = request.mimetype or "no Content-Type"
        fail(415, f"send the {what} as application/json (got {shown})")
    body = read_body(request)
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


def limit_arg(request: Request, default: int, maximum: int, name: str = "limit") -> int:
    """A query parameter that must be a whole number from 1 to ``maximum`` (else 400)."""
    raw = request.args.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        fail(400, f"{name} must be a whole number from 1 to {maximum}, got {raw!r}")
    return int(raw)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"
