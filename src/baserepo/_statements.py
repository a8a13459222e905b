"""Running the repository's own statements, with SQLAlchemy's errors translated at this one
boundary: reads that leave the session healthy and its objects true, and units of work.

A read refreshes the objects it loads (``populate_existing``) unless that would discard
unflushed edits (``_identity.can_refresh``). A read that fails in a transaction that only the
repository's reads opened, or on a connection that died, rolls that transaction back: on
PostgreSQL the session would otherwise refuse every later statement ("current transaction is
aborted"). A transaction the caller began is never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from ._errors import is_unavailable, translate
from ._identity import can_refresh
from ._orm_writes import note_read_opened, read_only_since_our_read
from ._transactions import atomic, caller_owns_transaction, finish_despite_cancellation

if TYPE_CHECKING:
    from sqlalchemy.engine import Result
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["TranslatedUnit", "read", "read_all", "read_one"]


async def read(session: AsyncSession, query: Any) -> Result[Any]:
    """Run a read: the objects it returns hold the database's values."""
    opens_transaction = session.sync_session.get_transaction() is None
    if can_refresh(session):
        query = query.execution_options(populate_existing=True)
    try:
        result = await session.execute(query)
    except sa_exc.SQLAlchemyError as error:
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
    """``atomic()`` with database errors translated once, at this boundary."""

    def __init__(self, session: AsyncSession) -> None:
        self._unit = atomic(session)

    async def __aenter__(self) -> None:
        try:
            await self._unit.__aenter__()
        except sa_exc.SQLAlchemyError as error:
            raise translate(error) from error

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
