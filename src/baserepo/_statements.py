"""Running the repository's own statements, with SQLAlchemy's errors translated at this one
boundary: reads that leave the session healthy and its objects true, and units of work.

A read refreshes the objects it loads (``populate_existing``) unless that would discard
unflushed edits (``_identity.can_refresh``). A read that fails in a transaction that only the
repository's reads opened, or on a connection that died, rolls that transaction back: on
PostgreSQL the session would otherwise refuse every later statement ("current transaction is
aborted"). A transaction the caller began is never touched.

A failure to connect is a failure of the database, never of a record or of the caller's code:
a unit of work acquires its connection first (``connect``), so that whatever fails there is
told apart from what its block raises, and reaches the caller as DatabaseUnavailableError
whatever the driver raised (asyncpg's own OSError included). A read needs no such step (it
would cost a round trip through the session per read): nothing but SQLAlchemy and the driver
runs inside ``session.execute``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from ._errors import ConnectionFailure, is_unavailable, translate
from ._identity import can_refresh
from ._orm_writes import note_read_opened, read_only_since_our_read
from ._transactions import atomic, caller_owns_transaction, finish_despite_cancellation

if TYPE_CHECKING:
    from sqlalchemy.engine import Result
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["TranslatedUnit", "connect", "read", "read_all", "read_one"]


async def connect(session: AsyncSession, model: type[Any]) -> None:
    """Give the session its connection for ``model`` now, where a failure can only be the
    connection's: raised translated, the transaction this call opened rolled back (so the
    next call connects afresh instead of meeting a half-begun transaction)."""
    opened = session.sync_session.get_transaction() is None
    try:
        await session.connection(bind_arguments={"mapper": model})
    except ConnectionFailure as error:
        if opened and session.sync_session.get_transaction() is not None:
            await finish_despite_cancellation(session.rollback())
        raise translate(error) from error


async def read(session: AsyncSession, query: Any) -> Result[Any]:
    """Run a read: the objects it returns hold the database's values."""
    opens_transaction = session.sync_session.get_transaction() is None
    if can_refresh(session):
        query = query.execution_options(populate_existing=True)
    try:
        result = await session.execute(query)
    except ConnectionFailure as error:  # an OSError here is the driver's (see the docstring)
        if not caller_owns_transaction(session) and (
            opens_transaction or read_only_since_our_read(session) or is_unavailable(error)
        ):
            # The transaction is ours and holds nothing to keep (or its connection is gone,
            # and the transaction with it): without a rollback the session would refuse every
            # later statement ("current transaction is aborted", "Can't reconnect until
            # invalid transaction is rolled back").
            await finish_despite_cancellation(session.rollback())
        raise translate(error) from error
    if opens_transaction:
        note_read_opened(session)
    return result


async def read_one(session: AsyncSession, query: Any) -> Any:
    return (await read(session, query)).scalar_one_or_none()


async def read_all(session: AsyncSession, query: Any) -> list[Any]:
    return list((await read(session, query)).scalars())


class TranslatedUnit:
    """``atomic()`` with database errors translated once, at this boundary; the unit's
    connection for ``model`` is acquired on entering it (``connect``)."""

    def __init__(self, session: AsyncSession, model: type[Any]) -> None:
        self._session = session
        self._model = model
        self._unit = atomic(session)

    async def __aenter__(self) -> None:
        # In the caller's transaction the unit's SAVEPOINT connects: connect before it.
        caller_owns = caller_owns_transaction(self._session)
        if caller_owns:
            await connect(self._session, self._model)
        try:
            await self._unit.__aenter__()
        except sa_exc.SQLAlchemyError as error:
            raise translate(error) from error
        if not caller_owns:
            try:
                await connect(self._session, self._model)
            except BaseException as error:
                await self._unit.__aexit__(type(error), error, error.__traceback__)
                raise

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            suppressed = await self._unit.__aexit__(*exc_info)
        except sa_exc.SQLAlchemyError as error:
            raise translate(error) from error
        # An error raised by the block itself (a flush refused by a unique constraint) has
        # just been rolled back above; atomic() re-raises it unchanged, so translate it here.
        raised = exc_info[1]
        if not suppressed and isinstance(raised, sa_exc.SQLAlchemyError):
            raise translate(raised) from raised
        return suppressed
