"""What follows a write: the session's objects made true at once, then the cache
invalidation and the event, queued for after the commit that makes the write true.

Invalidate after commit, never before: a reader in between would re-cache the old row. The
invalidation is queued before the event, so an event handler that reads sees fresh data; it is
keyed per cache, so a transaction that wrote many batches bumps the generation once. Rolled-back
work drops both (``_transactions.after_commit``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._events import EventType, RepositoryEvent
from ._identity import forget_deleted, sync_changed
from ._transactions import after_commit, invalidation_key, mark_written

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from ._bulk.tally import BatchCommitted
    from ._events import EventBus
    from ._model import ModelInfo
    from .cache._query_cache import QueryCache

__all__ = ["WriteEffects"]


class WriteEffects:
    """The after-commit effects of one repository's writes."""

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        cache: QueryCache | None,
        event_bus: EventBus,
    ) -> None:
        self._session = session
        self._info = info
        self._cache = cache
        self._bus = event_bus

    def wrote(self, kind: EventType, ids: Sequence[Any], data: Sequence[Mapping[str, Any]]) -> None:
        """A single-row write (its session objects are SQLAlchemy's own to keep true)."""
        self.invalidate_after_commit()
        self._publish_after_commit(RepositoryEvent(kind, self._info.model, tuple(ids), tuple(data)))

    def per_batch(
        self,
        kind: EventType,
        emit_events: bool,
        *,
        with_rows: bool,
        written: Mapping[str, Any] | None = None,
        event_row: Mapping[str, Any] | None = None,
        deletes: bool = False,
    ) -> BatchCommitted | None:
        """The bulk engine's per-batch callback; None when a batch needs none.

        ``written``: the column values a change statement set on every row of the batch;
        ``event_row``: what its events carry instead of the batch's rows;
        ``deletes``: the rows are gone.
        """
        if not emit_events and self._cache is None and written is None and not deletes:
            return None
        session, info = self._session, self._info

        def on_batch(ids: Sequence[Any], rows: Sequence[Mapping[str, Any]]) -> None:
            if deletes:
                forget_deleted(session, info, ids)
            elif written is not None:
                sync_changed(session, info, ids, written)
            self.invalidate_after_commit()
            if not emit_events:
                return
            data = ((event_row,) if event_row is not None else tuple(rows)) if with_rows else ()
            self._publish_after_commit(
                RepositoryEvent(kind, info.model, tuple(ids), data, bulk=True)
            )

        return on_batch

    def invalidate_after_commit(self) -> None:
        cache = self._cache
        if cache is None:
            return
        mark_written(self._session, self._info.model)
        after_commit(self._session, cache.invalidation(), key=invalidation_key(cache))

    def _publish_after_commit(self, event: RepositoryEvent) -> None:
        bus = self._bus
        after_commit(self._session, lambda: bus.publish(event))
