"""Repository events and the bus that delivers them to async handlers.

Events describe committed facts: the repository hands them to the bus only after the commit
that made them true (see ``_transactions``), so a handler never sees rolled-back work.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, overload

from typing_extensions import TypeVar

from ._types import IdT, IdT_co, ModelT, ModelT_co

if TYPE_CHECKING:
    import builtins

    from sqlalchemy import ColumnElement

    from ._types import KeyedModel

__all__ = ["EventBus", "EventHandler", "EventType", "RepositoryEvent", "default_event_bus"]

logger = logging.getLogger("baserepo.events")


class EventType(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    SOFT_DELETED = "soft_deleted"
    RESTORED = "restored"


# No slots=True: on Python 3.11 a slotted frozen dataclass cannot be built through its
# subscripted alias (``RepositoryEvent[User, int](...)``): typing sets __orig_class__ on the
# new instance, and the frozen __setattr__ of the slotted copy of the class raises TypeError.
@dataclass(frozen=True)
class RepositoryEvent(Generic[ModelT_co, IdT_co]):
    """Something that happened to rows of one model, after its commit.

    Typed by the model and its key: a handler subscribed with ``model=User`` (where
    ``User.id`` is ``Mapped[int]``) receives a ``RepositoryEvent[User, int]``; a bare
    ``RepositoryEvent`` is ``RepositoryEvent[Any, Any]``.
    """

    type: EventType
    model: builtins.type[ModelT_co]
    ids: tuple[IdT_co, ...]
    """Primary keys of the rows concerned."""
    data: tuple[Mapping[str, Any], ...] = ()
    """Created: the records as written, one per id. Updated: the changes applied to all ids."""
    bulk: bool = False
    """True when the event reports one batch of a bulk operation."""


# Defaults, so that a bare ``EventHandler`` (any model's events) stays complete under --strict.
_HandledModelT = TypeVar("_HandledModelT", default=Any)
_HandledIdT = TypeVar("_HandledIdT", default=Any)

EventHandler: TypeAlias = Callable[[RepositoryEvent[_HandledModelT, _HandledIdT]], Awaitable[None]]
"""An async callable taking one event: ``EventHandler[User, int]``; bare, any model's."""

_HandlerKey = tuple[EventType, type[Any] | None]


class EventBus:
    """Delivers events to async handlers subscribed per event type and, optionally, model.

    A failing handler is logged and skipped: the write it reports is already committed, and
    one broken subscriber must not hide the event from the others.
    """

    def __init__(self) -> None:
        self._handlers: dict[_HandlerKey, list[EventHandler[Any, Any]]] = {}

    # For type checkers: a handler for one model gets that model's events (and its key, where
    # _types.KeyedModel can read it; the first overload keeps it Any for a legacy Column, as
    # RepositoryState.__init__ does); a handler for every model must take
    # any model's events (``RepositoryEvent[Any]`` or ``RepositoryEvent[object, object]``).
    @overload
    def subscribe(
        self,
        event_type: EventType | str,
        handler: EventHandler[ModelT],
        *,
        model: type[KeyedModel[ModelT, ColumnElement[Any]]],
    ) -> None: ...
    @overload
    def subscribe(
        self,
        event_type: EventType | str,
        handler: EventHandler[ModelT, IdT],
        *,
        model: type[KeyedModel[ModelT, IdT]],
    ) -> None: ...
    @overload
    def subscribe(
        self, event_type: EventType | str, handler: EventHandler[ModelT], *, model: type[ModelT]
    ) -> None: ...
    @overload
    def subscribe(
        self,
        event_type: EventType | str,
        handler: EventHandler[object, object],
        *,
        model: None = None,
    ) -> None: ...
    def subscribe(
        self,
        event_type: EventType | str,
        handler: EventHandler[Any, Any],
        *,
        model: type[Any] | None = None,
    ) -> None:
        """Call ``handler`` for every ``event_type`` event (of ``model`` only, if given)."""
        key = (EventType(event_type), model)
        handlers = self._handlers.setdefault(key, [])
        if handler not in handlers:
            handlers.append(handler)

    def unsubscribe(
        self,
        event_type: EventType | str,
        handler: EventHandler[Any, Any],
        *,
        model: type[Any] | None = None,
    ) -> None:
        """Stop calling ``handler``; unknown handlers are ignored."""
        handlers = self._handlers.get((EventType(event_type), model), [])
        if handler in handlers:
            handlers.remove(handler)

    def clear(self) -> None:
        self._handlers.clear()

    async def publish(self, event: RepositoryEvent[Any, Any]) -> None:
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
