"""Repository events and the bus that delivers them to async handlers.

Events describe committed facts: the repository hands them to the bus only after the commit
that made them true (see ``_transactions``), so a handler never sees rolled-back work.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import builtins

__all__ = ["EventBus", "EventHandler", "EventType", "RepositoryEvent", "default_event_bus"]

logger = logging.getLogger("baserepo.events")


class EventType(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    SOFT_DELETED = "soft_deleted"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class RepositoryEvent:
    """Something that happened to rows of one model, after its commit."""

    type: EventType
    model: builtins.type[Any]
    ids: tuple[Any, ...]
    """Primary keys of the rows concerned."""
    data: tuple[Mapping[str, Any], ...] = ()
    """Created: the records as written, one per id. Updated: the changes applied to all ids."""
    bulk: bool = False
    """True when the event reports one batch of a bulk operation."""


EventHandler = Callable[[RepositoryEvent], Awaitable[None]]

_HandlerKey = tuple[EventType, type[Any] | None]


class EventBus:
    """Delivers events to async handlers subscribed per event type and, optionally, model.

    A failing handler is logged and skipped: the write it reports is already committed, and
    one broken subscriber must not hide the event from the others.
    """

    def __init__(self) -> None:
        self._handlers: dict[_HandlerKey, list[EventHandler]] = {}

    def subscribe(
        self, event_type: EventType | str, handler: EventHandler, *, model: type[Any] | None = None
    ) -> None:
        """Call ``handler`` for every ``event_type`` event (of ``model`` only, if given)."""
        key = (EventType(event_type), model)
        handlers = self._handlers.setdefault(key, [])
        if handler not in handlers:
            handlers.append(handler)

    def unsubscribe(
        self, event_type: EventType | str, handler: EventHandler, *, model: type[Any] | None = None
    ) -> None:
        """Stop calling ``handler``; unknown handlers are ignored."""
        handlers = self._handlers.get((EventType(event_type), model), [])
        if handler in handlers:
            handlers.remove(handler)

    def clear(self) -> None:
        self._handlers.clear()

    async def publish(self, event: RepositoryEvent) -> None:
        handlers = [
            *self._handlers.get((event.type, event.model), ()),
            *self._handlers.get((event.type, None), ()),
        ]
        for handler in handlers:
            try:
                await handler(event)
            except Exception:
                logger.exception(
                    "event handler %r failed on %s of %s (ids %s); the write stays committed",
                    handler,
                    event.type.value,
                    event.model.__name__,
                    event.ids[:10],
                )


default_event_bus = EventBus()
"""The bus repositories use when none is given."""
