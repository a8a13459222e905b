"""Connection-level guards of a bulk call: no AUTOCOMMIT, no broken connection pooled again."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from .._errors import database_message, is_unavailable
from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["refuse_autocommit", "retiring_broken_connection"]


@asynccontextmanager
async def retiring_broken_connection(session: AsyncSession) -> AsyncIterator[None]:
    """Invalidate the session's connection when a statement fails because of it.

    SQLAlchemy does so for what its dialect calls a disconnect; a connection fault it does
    not know (a prepared statement missing, 26000) would otherwise go back to the pool and
    fail the next session's statement the same way.
    """
    try:
        yield
    except OSError as error:
        # The driver's own (asyncpg connecting anew for this batch, the server gone): given
        # SQLAlchemy's form, so the loops' one ``except SQLAlchemyError`` sees it as
        # unavailable (``_errors.is_unavailable`` follows the cause). Only statements run here.
        raise sa_exc.DisconnectionError(database_message(error)) from error
    except sa_exc.DBAPIError as error:
        if is_unavailable(error) and not error.connection_invalidated:
            connection = await session.connection()
            await connection.invalidate(error.orig)
            error.connection_invalidated = True
        raise


async def refuse_autocommit(session: AsyncSession, model: type[Any]) -> None:
    """Raise ConfigurationError when the session's connection commits every statement itself.

    A batch is a unit of work: under AUTOCOMMIT its statements commit one by one (a staged
    COPY loses its rows to ON COMMIT DELETE ROWS, a failed batch is half written) and
    SAVEPOINT fails. Asked of SQLAlchemy, not the driver: on SQLite the savepoint recipe
    turns the driver's autocommit on and emits BEGIN itself.
    """
    if session.in_transaction():
        bound: Any = (await session.connection()).sync_connection
    else:
        bound = session.sync_session.get_bind(model)
    if isinstance(bound, Connection):
        # Private, and needed: SQLAlchemy's own test (an execution option, or the engine's
        # isolation_level); the public get_isolation_level() asks the database, which reports
        # its level (READ COMMITTED, SERIALIZABLE) whether or not the driver autocommits.
        autocommit = bound._is_autocommit_isolation()
    else:
        level = bound.get_execution_options().get("isolation_level")
        # Private, and needed: create_engine(isolation_level=...) is kept only here, and
        # nothing is connected yet to ask.
        autocommit = (level or bound.dialect._on_connect_isolation_level) == "AUTOCOMMIT"
    if autocommit:
        raise ConfigurationError(
            "bulk calls need transactions, but this session's connection has "
            "isolation_level='AUTOCOMMIT', under which each statement commits on its own and "
            "a batch can be neither atomic nor accounted for. Give the repository a session on "
            "an engine without it, e.g. AsyncSession(engine.execution_options("
            "isolation_level=<your database's default, such as 'READ COMMITTED'>))"
        )
