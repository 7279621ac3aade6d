"""``cascade send``: post one CloudEvent (to the local broker's ingress by default)."""

from __future__ import annotations

import base64
import re
import sys
import uuid
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import click
import orjson

from cascade.broker.oidc import ISSUER_PATH, issuer_key_path
from cascade.broker.topology.build import broker_audience
from cascade.codec import (
    STRUCTURED_CONTENT_TYPE,
    InvalidEvent,
    binary_headers,
    extension_name_problem,
    is_json_content_type,
    validate_attributes,
)
from cascade.commands._discover import DATA_DIR_OPTION, broker_url, ingress_url
from cascade.http_client import Answer, Unreachable, check_url, request
from cascade.issuer import LocalIssuer
from cascade.terminal import printable

__all__ = ["build_event", "parse_extensions", "send"]

EXIT_FAILED: Final = 1
# Attributes set by their own flags (or by the binding) are not extensions.
_RESERVED: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
        "partitionkey",
    }
)
_SHOWN_HEADERS = re.compile(r"(ce-|kne-|cascade-|location\Z|retry-after\Z)", re.IGNORECASE)


def parse_extensions(values: tuple[str, ...]) -> dict[str, str]:
    """``("region=eu", ...)`` → ``{"region": "eu"}``; click.BadParameter names what is wrong."""
    extensions: dict[str, str] = {}
    for text in values:
        name, equals, value = text.partition("=")
        if not equals:
            raise click.BadParameter(f"{text!r}: use NAME=VALUE", param_hint="--extension")
        problem = extension_name_problem(name)
        if problem:
            raise click.BadParameter(
                f"{text!r}: the name {name!r} {problem}", param_hint="--extension"
            )
        if name in _RESERVED:
            flag = (
                f"--{name}" if name in ("id", "source", "type", "subject", "partitionkey") else ""
            )
            hint = f" (use {flag})" if flag else ""
            raise click.BadParameter(
                f"{text!r}: {name!r} is not an extension{hint}", param_hint="--extension"
            )
        if name in extensions:
            raise click.BadParameter(f"{name!r} is given twice", param_hint="--extension")
        extensions[name] = value
    return extensions


def build_event(
    *,
    event_type: str,
    source: str,
    event_id: str,
    subject: str | None,
    partitionkey: str | None,
    extensions: dict[str, str],
    data: bytes | None,
    content_type: str,
) -> dict[str, str]:
    """Wire-form attributes, validated like the runtime validates an incoming event."""
    attributes = {"specversion": "1.0", "id": event_id, "source": source, "type": event_type}
    if subject is not None:
        attributes["subject"] = subject
    if partitionkey is not None:
        attributes["partitionkey"] = partitionkey
    attributes.update(extensions)
    if data is not None:
        attributes["datacontenttype"] = content_type
    try:
        validate_attributes(attributes)
    except InvalidEvent as exc:
        raise click.UsageError(f"not a valid CloudEvent: {exc.detail}") from None
    return attributes


def _read_data(data: str | None, data_file: Path | None, content_type: str) -> bytes | None:
    if data is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    if data is None and data_file is None:
        return None
    if data_file is not None:
        try:
            raw = data_file.read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {data_file}: {exc.strerror}", param_hint="--data-file"
            ) from None
        flag = "--data-file"
    else:
        assert data is not None
        raw, flag = data.encode("utf-8"), "--data"
    if is_json_content_type(content_type):
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(
                f"not valid JSON ({exc}); pass --content-type for other data", param_hint=flag
            ) from None
    return raw


def _structured(attributes: dict[str, str], data: bytes | None) -> bytes:
    document: dict[str, Any] = dict(attributes)
    content_type = attributes.get("datacontenttype")
    if data is not None:
        if is_json_content_type(content_type):
            document["data"] = orjson.loads(data)
            return orjson.dumps(document)
        if (content_type or "").startswith("text/"):
            try:
                document["data"] = data.decode("utf-8")
                return orjson.dumps(document)
            except UnicodeDecodeError:
                pass  # not text after all: send the bytes
        document["data_base64"] = base64.b64encode(data).decode("ascii")
    return orjson.dumps(document)


def mint_token(target: str, data_dir: Path, *, subject: str | None, audience: str | None) -> str:
    """A token from the local issuer's key, as the broker would accept from a same-namespace
    workload (or from ``subject``, which an EventPolicy may name)."""
    key = issuer_key_path(data_dir)
    if not key.exists():
        raise click.UsageError(
            f"--oidc: no issuer key at {key}; start cascade run --oidc (or cascade broker --oidc) "
            "with this --data-dir first"
        )
    path = urlsplit(target).path.strip("/").split("/")
    namespace = path[0] if len(path) == 2 and path[0] else "default"
    if audience is None:
        if len(path) != 2:
            raise click.UsageError("--oidc: give --audience (the URL is not /<namespace>/<broker>)")
        audience = broker_audience(*path)
    issuer = LocalIssuer.from_key_file(broker_url(data_dir) + ISSUER_PATH, key)
    return issuer.token(subject or f"system:serviceaccount:{namespace}:cascade-send", audience)


def print_answer(answer: Answer) -> None:
    click.echo(printable(f"HTTP {answer.status} {answer.reason}"))
    for name, value in answer.headers:
        if _SHOWN_HEADERS.match(name):
            click.echo(printable(f"{name}: {value}"))
    if answer.body:
        click.echo("\n".join(printable(line) for line in answer.text().splitlines()))


@click.command("send")
@click.option("--type", "event_type", required=True, help="The event type (ce-type).")
@click.option("--source", required=True, help="The event source, a URI reference (ce-source).")
@click.option("--id", "event_id", help="The event id (ce-id); default: a new UUID.")
@click.option("--subject", help="ce-subject.")
@click.option("--partitionkey", help="The partitionkey extension (ordering key; the order id).")
@click.option(
    "-e",
    "--extension",
    "extensions",
    multiple=True,
    metavar="NAME=VALUE",
    help="Another extension attribute; repeatable.",
)
@click.option("--data", help="The data, as JSON text.")
@click.option(
    "--data-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the data from a file.",
)
@click.option(
    "--content-type",
    default="application/json",
    show_default=True,
    help="datacontenttype; JSON types are checked to be valid JSON.",
)
@click.option(
    "--binary/--structured",
    "binary",
    default=True,
    help="Content mode: ce-* headers and the data as the body (default), or one JSON document.",
)
@click.option(
    "--url",
    help="Where to POST; default: the broker ingress of the running cascade run "
    "(else http://127.0.0.1:8080/default/shop).",
)
@DATA_DIR_OPTION
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--token",
    help="A bearer token to present (Authorization: Bearer), e.g. one your cluster issued.",
)
@click.option(
    "--oidc",
    "mint",
    is_flag=True,
    help="Present a token minted with the key of the local broker's issuer in --data-dir "
    "(cascade run --oidc / cascade broker --oidc), for the target's audience.",
)
@click.option(
    "--as",
    "token_subject",
    help="With --oidc, the token's subject; default "
    "system:serviceaccount:<namespace>:cascade-send.",
)
@click.option(
    "--audience",
    help="With --oidc, the token's audience; default: the Broker's, from a /<namespace>/<broker> "
    "URL.",
)
def send(
    event_type: str,
    source: str,
    event_id: str | None,
    subject: str | None,
    partitionkey: str | None,
    extensions: tuple[str, ...],
    data: str | None,
    data_file: Path | None,
    content_type: str,
    binary: bool,
    url: str | None,
    data_dir: Path,
    timeout: float,
    token: str | None,
    mint: bool,
    token_subject: str | None,
    audience: str | None,
) -> None:
    """Post one CloudEvent and print the answer.

    Exit codes: 0 for a 2xx answer, 1 for any other answer or no answer, 2 for bad flags
    (invalid JSON, unreadable file, malformed NAME=VALUE, an invalid attribute).
    """
    target = url or ingress_url(data_dir)
    try:
        check_url(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    body = _read_data(data, data_file, content_type)
    attributes = build_event(
        event_type=event_type,
        source=source,
        event_id=event_id or str(uuid.uuid4()),
        subject=subject,
        partitionkey=partitionkey,
        extensions=parse_extensions(extensions),
        data=body,
        content_type=content_type,
    )
    if binary:
        headers = binary_headers(attributes)
        payload = body or b""
    else:
        headers = {"Content-Type": f"{STRUCTURED_CONTENT_TYPE}; charset=utf-8"}
        payload = _structured(attributes, body)
    if token and mint:
        raise click.UsageError("give --token or --oidc, not both")
    if mint:
        token = mint_token(target, data_dir, subject=token_subject, audience=audience)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        answer = request("POST", target, headers=headers, body=payload, timeout=timeout)
    except Unreachable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"sent {attributes['type']} id={attributes['id']} to {target}", err=True)
    print_answer(answer)
    if not answer.ok:
        sys.exit(EXIT_FAILED)
