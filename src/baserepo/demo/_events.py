"""An event handler that counts what the repository published, per event type."""

from __future__ import annotations

from collections import Counter

from baserepo import EventBus, EventType, RepositoryEvent

from ._model import User

__all__ = ["EventCounter"]


class EventCounter:
    """An event handler that counts the events (and the rows they report) per type."""

    def __init__(self) -> None:
        self.events: Counter[EventType] = Counter()
        self.rows: Counter[EventType] = Counter()

    async def __call__(self, event: RepositoryEvent) -> None:
        self.events[event.type] += 1
        self.rows[event.type] += len(event.ids)

    def subscribe_to(self, bus: EventBus) -> None:
        for event_type in EventType:
            bus.subscribe(event_type, self, model=User)

    def snapshot(self) -> tuple[Counter[EventType], Counter[EventType]]:
        return Counter(self.events), Counter(self.rows)
