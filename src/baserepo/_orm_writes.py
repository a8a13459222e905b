"""Writes made through the session itself, not through a repository.

A cached repository is only as fresh as its invalidations, and an application also writes
through the session it hands the repository: ``user.salary = 1; await session.commit()``,
``session.add(...)``, ``session.delete(...)``, ``await session.execute(update(User)...)``.
Each such write queues the model's invalidation after commit (once per model and cache per
commit, dropped on rollback, like the repository's own writes) and makes the rest of its
transaction read past the cache.

What the session never sees stays invisible: SQL sent on a raw connection, text statements,
other applications. ``invalidate_cache()`` is the remedy there (docs/cache.md).

The same listeners note whether the transaction has written anything, so that a failed read
can roll back a transaction that only our reads opened (``read_only_since_our_read``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from ._transactions import after_commit, invalidation_key, mark_written, watch_commits

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

    from .cache._query_cache import QueryCache

__all__ = ["note_read_opened", "read_only_since_our_read", "track_writes"]

_CACHES_KEY = "baserepo.caches_by_model"
_READ_OPENED_KEY = "baserepo.read_opened_transaction"


def track_writes(session: AsyncSession, model: type[Any], cache: QueryCache | None) -> None:
    """Watch ``session`` for ORM writes; invalidate ``cache`` when they touch ``model``."""
    sync_session = session.sync_session
    caches: dict[type[Any], dict[int, QueryCache]] | None = sync_session.info.get(_CACHES_KEY)
    if caches is None:
        caches = sync_session.info[_CACHES_KEY] = {}
        # Listeners live as long as the session, not one repository: install them once.
        event.listen(sync_session, "after_flush", _on_flush)
        event.listen(sync_session, "do_orm_execute", _on_execute)
    if cache is not None:
        caches.setdefault(model, {})[id(cache)] = cache
        # A commit's own flush may queue the invalidation: its before-COMMIT part needs the
        # commit listeners installed before that commit starts.
        watch_commits(session)


def note_read_opened(session: AsyncSession) -> None:
    """The transaction now open was opened by one of our reads."""
    sync_session = session.sync_session
    sync_session.info[_READ_OPENED_KEY] = sync_session.get_transaction()


def read_only_since_our_read(session: AsyncSession) -> bool:
    """Was the open transaction opened by our read, with nothing written in it since?"""
    sync_session = session.sync_session
    transaction = sync_session.get_transaction()
    return transaction is not None and sync_session.info.get(_READ_OPENED_KEY) is transaction


def _wrote(sync_session: Session, classes: set[type[Any]]) -> None:
    sync_session.info.pop(_READ_OPENED_KEY, None)
    caches: dict[type[Any], dict[int, QueryCache]] = sync_session.info.get(_CACHES_KEY, {})
    if not caches:
        return
    for written in classes:
        # A write to a subclass (joined or single-table inheritance) changes the rows a
        # repository of any of its mapped bases reads.
        for model in written.__mro__:
            for cache in caches.get(model, {}).values():
                _invalidate_after_commit(sync_session, model, cache)


def _invalidate_after_commit(sync_session: Session, model: type[Any], cache: QueryCache) -> None:
    mark_written(sync_session, model)
    # The same key as the repository's own writes: one bump per cache per commit.
    after_commit(sync_session, cache.invalidation(), key=invalidation_key(cache))


def _on_flush(sync_session: Session, _flush: UOWTransaction) -> None:
    # In after_flush, new/dirty/deleted still list what this flush wrote.
    classes = {
        type(instance)
        for group in (sync_session.new, sync_session.dirty, sync_session.deleted)
        for instance in group
    }
    if classes:
        _wrote(sync_session, classes)
    else:
        sync_session.info.pop(_READ_OPENED_KEY, None)


def _on_execute(state: ORMExecuteState) -> Any:
    if state.is_select:
        return None
    sync_session = state.session
    if not (state.is_insert or state.is_update or state.is_delete):
        sync_session.info.pop(_READ_OPENED_KEY, None)  # text(), DDL...: may have written
        return None
    sync_session.info.pop(_READ_OPENED_KEY, None)
    classes = {mapper.class_ for mapper in state.all_mappers}
    # A Core statement on a Table (the bulk engine's) is tracked by its caller; a session
    # without a cached repository has nothing to invalidate.
    if not classes or not sync_session.info.get(_CACHES_KEY):
        return None
    # The statement opens the transaction when none is open yet; run it first so that the
    # invalidation is queued on that transaction (and dropped if it rolls back).
    result = state.invoke_statement()
    _wrote(sync_session, classes)
    return result
