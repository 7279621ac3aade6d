"""What a handler gets besides its typed event: attributes, logger, store, publisher."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from sqlalchemy.orm import Session

from cascade.attribute_view import AttributeView

if TYPE_CHECKING:
    from flask import Request

    from cascade.publish import Publisher

__all__ = ["Context", "HttpContext"]

CORE_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject"}
)


class _Resources:
    """Store session and publisher, opened only when a handler asks for them."""

    __slots__ = ("_open_session", "_publisher", "_session")

    def __init__(
        self,
        open_session: Callable[[], Session],
        publisher: Callable[[], Publisher],
        session: Session | None = None,
    ) -> None:
        self._open_session = open_session
        self._publisher = publisher
        self._session = session

    @property
    def store(self) -> Session:
        """SQLAlchemy Session inside this event's transaction (committed with the reply)."""
        if self._session is None:
            self._session = self._open_session()
        return self._session

    @property
    def store_opened(self) -> Session | None:
        return self._session

    @property
    def publisher(self) -> Publisher:
        """Publishes new events to K_SINK (raises PublishError when it cannot)."""
        return self._publisher()


class Context(AttributeView, _Resources):
    """The handler's view of the delivery: raw CloudEvent attributes and runtime services."""

    __slots__ = ("attributes", "function", "logger")

    def __init__(
        self,
        attributes: Mapping[str, str],
        *,
        function: str,
        logger: logging.Logger,
        open_session: Callable[[], Session],
        publisher: Callable[[], Publisher],
        session: Session | None = None,
    ) -> None:
        super().__init__(open_session, publisher, session)
        self.attributes: Mapping[str, str] = attributes
        self.function = function
        self.logger = logger

    @property
    def time(self) -> str | None:
        """The ``time`` attribute as sent (RFC 3339), or None."""
        return self.attributes.get("time")

    @property
    def partitionkey(self) -> str | None:
        return self.attributes.get("partitionkey")

    @property
    def extensions(self) -> dict[str, str]:
        """Every attribute that is not a core CloudEvents attribute."""
        return {k: v for k, v in self.attributes.items() if k not in CORE_ATTRIBUTES}


class HttpContext(_Resources):
    """For plain HTTP routes (``@fn.route``): the Flask request plus the same services."""

    __slots__ = ("function", "logger", "request")

    def __init__(
        self,
        request: Request,
        *,
        function: str,
        logger: logging.Logger,
        open_session: Callable[[], Session],
        publisher: Callable[[], Publisher],
    ) -> None:
        super().__init__(open_session, publisher)
        self.request = request
        self.function = function
        self.logger = logger
