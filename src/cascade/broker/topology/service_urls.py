"""``--service-url [NAMESPACE/]NAME=URL``: where a Knative Service runs locally.

A Trigger's ``subscriber.ref`` (or a dead-letter sink's ``ref``) names a Knative Service; on a
cluster Knative resolves it, locally ``cascade run`` starts the function and tells the broker
its URL with this option. A given URL wins over the manifest's ``cascade.dev/url`` annotation
and ``status`` (see :func:`cascade.broker.topology.load_topology`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

__all__ = ["ServiceUrlError", "format_service_url", "parse_service_url", "parse_service_urls"]

DEFAULT_NAMESPACE: Final = "default"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


class ServiceUrlError(ValueError):
    """A ``--service-url`` value that cannot be used; the message says why."""


def parse_service_url(text: str) -> tuple[tuple[str, str], str]:
    """``"default/order=http://127.0.0.1:8081"`` → ``(("default", "order"), "http://...")``."""
    name_part, equals, url = text.partition("=")
    if not equals:
        raise ServiceUrlError(f"{text!r}: use [NAMESPACE/]NAME=URL")
    namespace, slash, name = name_part.strip().rpartition("/")
    if not slash:
        namespace = DEFAULT_NAMESPACE
    for what, value in (("namespace", namespace), ("Service name", name)):
        if not _DNS_LABEL.match(value):
            raise ServiceUrlError(
                f"{text!r}: {value!r} is not a valid {what} (lowercase letters, digits and "
                "'-', at most 63)"
            )
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceUrlError(f"{text!r}: {url!r} is not an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ServiceUrlError(f"{text!r}: {exc}") from None
    return (namespace, name), url


def parse_service_urls(values: Iterable[str]) -> dict[tuple[str, str], str]:
    """Several values; the same Service twice is an error rather than a silent override."""
    urls: dict[tuple[str, str], str] = {}
    for text in values:
        key, url = parse_service_url(text)
        if key in urls and urls[key] != url:
            raise ServiceUrlError(
                f"Service {key[0]}/{key[1]} is given twice: {urls[key]!r} and {url!r}"
            )
        urls[key] = url
    return urls


def format_service_url(namespace: str, name: str, url: str) -> str:
    """The option value for ``parse_service_url``."""
    return f"{namespace}/{name}={url}"
