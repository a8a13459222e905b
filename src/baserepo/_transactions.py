"""Who owns the transaction, and work that must wait for the commit.

A repository call either runs inside a transaction the caller began explicitly
(``async with session.begin():``), in which case it never commits and isolates each batch in
a SAVEPOINT, or it owns the transaction and commits each batch itself. SQLAlchemy records
which: ``SessionTransaction.origin`` is ``BEGIN``/``BEGIN_NESTED`` for the caller's own
transactions and ``AUTOBEGIN`` for one a statement opened implicitly.

Work deferred with :func:`after_commit` (events now, cache invalidation later) is attached to
the innermost transaction open at the time. A released SAVEPOINT hands its work to its
parent, a rolled-back one drops it, and the outermost commit runs it, awaited inside
``AsyncSession.commit()`` so it has finished when the caller's commit returns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin
from sqlalchemy.util import await_only

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["after_commit", "caller_owns_transaction", "atomic", "ensure_savepoints_work"]

logger = logging.getLogger("baserepo.transactions")

DeferredWork = Callable[[], Awaitable[None]]

_QUEUE_KEY = "baserepo.after_commit_queue"
_SAVEPOINT_CHECKED_KEY = "baserepo.savepoints_checked"


def caller_owns_transaction(session: AsyncSession) -> bool:
    """True when the caller began the open transaction explicitly, so we must not commit."""
    transaction = session.sync_session.get_transaction()
    if transaction is None:
        return False
    return transaction.origin is not SessionTransactionOrigin.AUTOBEGIN


def after_commit(session: AsyncSession, work: DeferredWork) -> None:
    """Run ``work`` after the outermost commit of the open transaction; drop it on rollback."""
    sync_session = session.sync_session
    transaction = sync_session.get_nested_transaction() or sync_session.get_transaction()
    if transaction is None:
        raise RuntimeError("after_commit() needs an open transaction")
    _queue(sync_session).setdefault(transaction, []).append(work)


@asynccontextmanager
async def atomic(session: AsyncSession) -> AsyncIterator[None]:
    """One all-or-nothing unit of work: a SAVEPOINT in the caller's transaction, else our own.

    In our own transaction the commit happens on leaving the block, so deferred work has run
    by the time the block exits. Any exception rolls the unit back and propagates.
    """
    if caller_owns_transaction(session):
        await ensure_savepoints_work(session)
        async with session.begin_nested():
            yield
        return
    if session.sync_session.get_transaction() is not None:
        # An implicit (autobegun) transaction is the caller's unit of work in SQLAlchemy's
        # autocommit-free model; finish it so our batch can be its own transaction.
        await session.commit()
    async with session.begin():
        yield


async def ensure_savepoints_work(session: AsyncSession) -> None:
    """Refuse to rely on SAVEPOINT where pysqlite/aiosqlite would silently break it."""
    if session.sync_session.info.get(_SAVEPOINT_CHECKED_KEY):
        return
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        raw = await connection.get_raw_connection()
        isolation_level = getattr(raw.dbapi_connection, "isolation_level", None)
        if isolation_level is not None:
            raise ConfigurationError(
                "this SQLite engine keeps the driver's default transaction handling, under "
                "which a SAVEPOINT can commit on its own and a rollback would not undo it. "
                "Create the engine with baserepo.create_engine(url) or apply "
                "baserepo.enable_sqlite_savepoints(engine) (SQLAlchemy's documented recipe)."
            )
    session.sync_session.info[_SAVEPOINT_CHECKED_KEY] = True


def _queue(sync_session: Session) -> dict[SessionTransaction, list[DeferredWork]]:
    queue: dict[SessionTransaction, list[DeferredWork]] | None = sync_session.info.get(_QUEUE_KEY)
    if queue is None:
        queue = {}
        sync_session.info[_QUEUE_KEY] = queue
        # Listeners live as long as the session, not one repository: install them once.
        event.listen(sync_session, "after_commit", _on_commit)
        event.listen(sync_session, "after_transaction_end", _on_transaction_end)
    return queue


def _on_commit(sync_session: Session) -> None:
    queue = _queue(sync_session)
    nested = sync_session.get_nested_transaction()
    if nested is not None:
        # A released SAVEPOINT: its work now stands or falls with the enclosing transaction.
        work = queue.pop(nested, [])
        if work and nested.parent is not None:
            queue.setdefault(nested.parent, []).extend(work)
        return
    pending = [work for transaction_work in queue.values() for work in transaction_work]
    queue.clear()
    if pending:
        await_only(_run_all(pending))


def _on_transaction_end(sync_session: Session, transaction: SessionTransaction) -> None:
    # Committed work was moved or run in _on_commit; whatever is still keyed here was rolled
    # back (or the session closed without committing), so it must never run.
    _queue(sync_session).pop(transaction, None)


async def _run_all(pending: list[DeferredWork]) -> None:
    for work in pending:
        try:
            await work()
        except Exception:
            logger.exception("work deferred to after commit failed; the commit stands")
