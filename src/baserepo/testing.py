"""Helpers for the tests of applications that use baserepo.

``RecordingEventBus`` keeps every event it delivers, so a test can assert on what a
repository published (and when: events arrive only after commit)::

    bus = RecordingEventBus()
    repo = BaseRepository(User, session, event_bus=bus)
    await repo.bulk_create(rows)
    assert bus.ids(EventType.CREATED) == result.created_ids

For a cache without a server, use ``CacheConfig()`` (the in-process backend) with
``clock=`` injected to drive TTLs and warm intervals without sleeping.

``ensure_database(url)`` and ``drop_database(url)`` create and drop the database a URL names
(PostgreSQL, MariaDB/MySQL; nothing to do for SQLite), e.g. around a test session::

    await ensure_database("postgresql+asyncpg://postgres@127.0.0.1/app_test")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from ._databases import drop_database, ensure_database
from ._events import EventBus, EventType, RepositoryEvent

if TYPE_CHECKING:
    from ._types import ModelT

__all__ = ["RecordingEventBus", "drop_database", "ensure_database"]


class RecordingEventBus(EventBus):
    """An :class:`~baserepo.EventBus` that also remembers every event it published."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[RepositoryEvent[Any, Any]] = []

    async def publish(self, event: RepositoryEvent[Any, Any]) -> None:
        self.events.append(event)
        await super().publish(event)

    @overload
    def of(
        self, event_type: EventType | str, model: type[ModelT]
    ) -> list[RepositoryEvent[ModelT]]: ...
    @overload
    def of(
        self, event_type: EventType | str, model: None = None
    ) -> list[RepositoryEvent[Any, Any]]: ...
    def of(
        self, event_type: EventType | str, model: type[Any] | None = None
    ) -> list[RepositoryEvent[Any, Any]]:
        """The events of one type (and model), in the order they were published."""
        wanted = EventType(event_type)
        return [e for e in self.events if e.type is wanted and (model is None or e.model is model)]

    def ids(self, event_type: EventType | str, model: type[Any] | None = None) -> list[Any]:
        """Every id the events of one type carried, flattened, in order."""
        return [i for event in self.of(event_type, model) for i in event.ids]

    def clear_events(self) -> None:
        self.events.clear()
