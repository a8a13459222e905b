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

Work that is a :class:`PreparedWork` (a cache invalidation) also acts just before the
outermost COMMIT, after the last flush (``before_commit``), and is told when the transaction
ends without that COMMIT having succeeded (``abandon``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin
from sqlalchemy.util import await_only

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "PreparedWork",
    "after_commit",
    "atomic",
    "caller_owns_transaction",
    "ensure_savepoints_work",
    "finish_despite_cancellation",
    "has_written",
    "invalidation_key",
    "mark_written",
    "register_savepoint_check",
    "watch_commits",
]

logger = logging.getLogger("baserepo.transactions")

DeferredWork = Callable[[], Awaitable[None]]
# Work queued under the same key runs once per commit (one cache invalidation per model,
# however many batches wrote to it); work queued without a key always runs.
_Queue = dict[SessionTransaction, dict[Hashable, DeferredWork]]

_QUEUE_KEY = "baserepo.after_commit_queue"
_SAVEPOINT_CHECKED_KEY = "baserepo.savepoints_checked"
_WRITTEN_KEY = "baserepo.written_models"
_COMMITTED_WORK_KEY = "baserepo.committed_work"
_PREPARED_WORK_KEY = "baserepo.prepared_work"


class PreparedWork:
    """Deferred work with a part before the outermost COMMIT: ``before_commit()`` runs after
    the transaction's last flush, just before COMMIT; ``__call__`` after it, as any deferred
    work; ``abandon()`` instead, when the transaction ends after ``before_commit()`` without
    a successful COMMIT (refused, failed, or with an unknown outcome)."""

    async def before_commit(self) -> None:
        raise NotImplementedError

    async def __call__(self) -> None:
        raise NotImplementedError

    async def abandon(self) -> None:
        raise NotImplementedError


def caller_owns_transaction(session: AsyncSession) -> bool:
    """True when the caller began the open transaction explicitly, so we must not commit."""
    transaction = session.sync_session.get_transaction()
    if transaction is None:
        return False
    return transaction.origin is not SessionTransactionOrigin.AUTOBEGIN


def _sync(session: AsyncSession | Session) -> Session:
    # Session listeners (the ORM-write tracking) hold the sync session only.
    return session if isinstance(session, Session) else session.sync_session


def invalidation_key(cache: object) -> Hashable:
    """The after-commit key of one cache's invalidation: one bump per cache per commit."""
    return ("baserepo.invalidate", id(cache))


def after_commit(
    session: AsyncSession | Session, work: DeferredWork, *, key: Hashable = None
) -> None:
    """Run ``work`` after the outermost commit of the open transaction; drop it on rollback.

    ``key``: work queued again under the same key replaces nothing and runs once.
    """
    sync_session = _sync(session)
    transaction = sync_session.get_nested_transaction() or sync_session.get_transaction()
    if transaction is None:
        raise RuntimeError("after_commit() needs an open transaction")
    queued = _queue(sync_session).setdefault(transaction, {})
    queued.setdefault(key if key is not None else object(), work)


def watch_commits(session: AsyncSession | Session) -> None:
    """Install the commit listeners now: work queued by a flush that the commit itself runs
    must still find the ``before_commit`` listener in place."""
    _queue(_sync(session))


def mark_written(session: AsyncSession | Session, model: type[Any]) -> None:
    """Remember that the open transaction wrote ``model``: its reads must bypass the cache."""
    sync_session = _sync(session)
    _queue(sync_session)  # installs the listener that forgets at transaction end
    sync_session.info.setdefault(_WRITTEN_KEY, set()).add(model)


def has_written(session: AsyncSession, model: type[Any]) -> bool:
    written: set[type[Any]] | None = session.sync_session.info.get(_WRITTEN_KEY)
    return bool(written) and model in written  # type: ignore[operator]


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
        await finish_despite_cancellation(session.commit())
    transaction = await session.begin()
    try:
        yield
    except BaseException:
        await finish_despite_cancellation(transaction.rollback())
        raise
    # Once COMMIT is sent, the invalidations and events queued for it must run whatever
    # happens to the caller (a request timeout, a client gone): a cancelled caller would
    # otherwise leave every cached query of the model serving pre-write rows.
    try:
        await finish_despite_cancellation(transaction.commit())
    except BaseException:
        # A COMMIT the database refused (a serialization failure at commit time) leaves the
        # transaction open in the "prepared" state: roll it back so the session stays usable.
        if session.in_transaction():
            await finish_despite_cancellation(session.rollback())
        raise


async def finish_despite_cancellation(work: Awaitable[Any]) -> Any:
    """Await ``work`` to its end even if the caller is cancelled meanwhile; the cancellation
    is delivered afterwards. ``work`` runs as a task of its own, shielded from the caller's."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as cancellation:
            cancelled = cancellation
    if cancelled is not None:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it: the caller was cancelled
        raise cancelled
    return task.result()


SavepointCheck = Callable[[Any], "str | None"]
"""Given a DBAPI connection: why a SAVEPOINT on it would not be one (None: it works)."""

_SAVEPOINT_CHECKS: dict[str, SavepointCheck] = {}


def register_savepoint_check(dialect_name: str, check: SavepointCheck) -> None:
    """Let a database's module say when its driver breaks SAVEPOINT (as SQLite's does)."""
    _SAVEPOINT_CHECKS[dialect_name] = check


async def ensure_savepoints_work(session: AsyncSession) -> None:
    """Refuse to rely on SAVEPOINT where the driver would silently break it."""
    if session.sync_session.info.get(_SAVEPOINT_CHECKED_KEY):
        return
    connection = await session.connection()
    check = _SAVEPOINT_CHECKS.get(connection.dialect.name)
    if check is not None:
        raw = await connection.get_raw_connection()
        why = check(raw.dbapi_connection)
        if why is not None:
            raise ConfigurationError(why)
    session.sync_session.info[_SAVEPOINT_CHECKED_KEY] = True


def _queue(sync_session: Session) -> _Queue:
    queue: _Queue | None = sync_session.info.get(_QUEUE_KEY)
    if queue is None:
        queue = {}
        sync_session.info[_QUEUE_KEY] = queue
        # Listeners live as long as the session, not one repository: install them once.
        event.listen(sync_session, "before_commit", _before_commit)
        event.listen(sync_session, "after_commit", _on_commit)
        event.listen(sync_session, "after_transaction_end", _on_transaction_end)
    return queue


def _before_commit(sync_session: Session) -> None:
    if sync_session.get_nested_transaction() is not None:
        # A SAVEPOINT's release (or, rarely, a root committed with one still open: its work
        # then runs after the COMMIT unprepared, as plain deferred work).
        return
    if sync_session.new or sync_session.dirty or sync_session.deleted:
        # SQLAlchemy flushes after this event; flush now so the work those writes queue is
        # prepared before COMMIT too.
        sync_session.flush()
    queue = _queue(sync_session)
    prepared = [
        item
        for transaction_work in queue.values()
        for item in transaction_work.values()
        if isinstance(item, PreparedWork)
    ]
    if prepared:
        # Set aside first: whatever happens next, the transaction's end abandons or runs them.
        sync_session.info[_PREPARED_WORK_KEY] = prepared
        await_only(
            finish_despite_cancellation(
                _run_all([item.before_commit for item in prepared], "before commit")
            )
        )


def _on_commit(sync_session: Session) -> None:
    queue = _queue(sync_session)
    nested = sync_session.get_nested_transaction()
    if nested is not None:
        # A released SAVEPOINT: its work now stands or falls with the enclosing transaction.
        work = queue.pop(nested, {})
        if work and nested.parent is not None:
            parent = queue.setdefault(nested.parent, {})
            for key, item in work.items():
                parent.setdefault(key, item)
        return
    pending = [item for transaction_work in queue.values() for item in transaction_work.values()]
    queue.clear()
    sync_session.info.pop(_PREPARED_WORK_KEY, None)  # committed: they run as pending work
    sync_session.info.pop(_WRITTEN_KEY, None)
    if pending:
        # Run when the transaction has ended (below), not here: an exception out of an
        # after_commit listener (a cancellation of the caller) would leave the session stuck
        # in the committed state, while at transaction end it is already clean.
        sync_session.info[_COMMITTED_WORK_KEY] = pending


def _on_transaction_end(sync_session: Session, transaction: SessionTransaction) -> None:
    # Committed work was moved or set aside in _on_commit; whatever is still keyed here was
    # rolled back (or the session closed without committing), so it must never run.
    _queue(sync_session).pop(transaction, None)
    if transaction.parent is not None:
        return
    sync_session.info.pop(_WRITTEN_KEY, None)
    abandoned: list[PreparedWork] | None = sync_session.info.pop(_PREPARED_WORK_KEY, None)
    if abandoned:
        # Prepared for a COMMIT that did not succeed, or whose outcome is unknown.
        await_only(
            finish_despite_cancellation(
                _run_all([item.abandon for item in abandoned], "an abandoned commit")
            )
        )
    committed: list[DeferredWork] | None = sync_session.info.pop(_COMMITTED_WORK_KEY, None)
    if committed:
        # Awaited inside the caller's commit(), so it has finished when commit() returns. A
        # cancellation of the caller meanwhile lets the work finish, then is raised: the
        # transaction is closed and its connection released by now, so the session is fine.
        await_only(finish_despite_cancellation(_run_all(committed)))


async def _run_all(pending: list[DeferredWork], when: str = "after commit") -> None:
    for work in pending:
        try:
            await work()
        except Exception:
            logger.exception("work deferred to %s failed; the transaction's outcome stands", when)
