"""What a handler gets besides its typed event: attributes, logger, store, publisher."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from cascade.attribute_view import AttributeView

if TYPE_CHECKING:
    from flask import Request

    from cascade.events import Event
    from cascade.outbox import Outbox
    from cascade.publish import Publisher
    from cascade.reply import Reply

__all__ = ["Context", "HttpContext"]


class _Resources:
    """Store session, outbox and publisher, opened only when a handler asks for them."""

    __slots__ = ("_open_session", "_outbox", "_publisher", "_session")

    def __init__(
        self,
        open_session: Callable[[], Session],
        publisher: Callable[[], Publisher],
        session: Session | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self._open_session = open_session
        self._publisher = publisher
        self._session = session
        self._outbox = outbox

    def publish(
        self,
        event: Event | Reply,
        *,
        subject: str | None = None,
        partitionkey: str | None = None,
        extensions: dict[str, str] | None = None,
    ) -> str:
        """Publish ``event`` to K_SINK *with this transaction*: it is written to the outbox
        in ``ctx.store``'s transaction and sent after the commit (never if it rolls back).
        Returns its CloudEvents id, kept on every send attempt."""
        return self.outbox.add(
            self.store, event, subject=subject, partitionkey=partitionkey, extensions=extensions
        )

    @property
    def outbox(self) -> Outbox:
        """The function's outbox: ``pending(partitionkey=None)``, ``failed()``, ``flush()``."""
        if self._outbox is None:
            raise RuntimeError("this context has no outbox (it was not made by the runtime)")
        return self._outbox

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
        """Sends to K_SINK at once, outside the transaction (raises PublishError when it
        cannot); prefer :meth:`publish`, which commits the event with the effects."""
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
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__(open_session, publisher, session, outbox)
        self.attributes: Mapping[str, str] = attributes
        self.function = function
        self.logger = logger


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
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__(open_session, publisher, outbox=outbox)
        self.request = request
        self.function = function
        self.logger = logger
