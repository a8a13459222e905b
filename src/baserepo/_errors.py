"""The one boundary where SQLAlchemy/driver errors become baserepo's."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from ._results import FailureKind
from .exceptions import DatabaseUnavailableError, IntegrityConflictError, RepositoryDatabaseError

__all__ = [
    "ConnectionFailure",
    "database_message",
    "failure_kind",
    "is_connection_state",
    "is_unavailable",
    "translate",
]

# SQLSTATEs of the connection, not of the data: connection exceptions (08), the server shutting
# down or terminating the backend (57P01-57P04), a prepared statement the connection relied on
# missing (26000) or one of the same name already there (42P05): both mean a pooler between us
# and the server (PgBouncer in transaction mode) handed us a server connection prepared by
# another client, which no record of ours caused.
_CONNECTION_STATES = ("08", "57P", "26000", "42P05")

ConnectionFailure = (sa_exc.SQLAlchemyError, OSError)
"""What a statement or a connect can raise for the database's sake: SQLAlchemy's errors, and
the OSError some drivers raise as it is from connect (asyncpg's ConnectionRefusedError,
socket.gaierror, TimeoutError), which SQLAlchemy wraps only for DBAPI errors."""


def is_unavailable(error: BaseException) -> bool:
    """The database could not be reached or the connection failed: no record is at fault."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    orig = getattr(error, "orig", None)
    if is_connection_state(getattr(orig, "sqlstate", None)):
        return True
    if _client_side_failure(error, orig):
        return True
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionError | OSError) and not isinstance(
            cause, FileNotFoundError
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _client_side_failure(error: BaseException, orig: object) -> bool:
    """A PostgreSQL driver's own OperationalError outside any statement: psycopg's "connection
    failed: ... Connection refused" at connect, which carries no SQLSTATE (the server never
    answered) and no OSError cause, so nothing else here would see it. Within a statement
    the same class also covers client-side refusals of the statement itself."""
    return (
        isinstance(error, sa_exc.OperationalError)
        and error.statement is None
        and hasattr(orig, "sqlstate")
        and getattr(orig, "sqlstate", None) is None
    )


def is_connection_state(sqlstate: object) -> bool:
    """The SQLSTATE is the connection's failure, not the data's."""
    return isinstance(sqlstate, str) and sqlstate.startswith(_CONNECTION_STATES)


def is_unique_violation(error: BaseException) -> bool:
    text = database_message(error).lower()
    return isinstance(error, sa_exc.IntegrityError) and ("unique" in text or "duplicate" in text)


def failure_kind(error: BaseException) -> FailureKind:
    if isinstance(error, sa_exc.IntegrityError):
        return FailureKind.INTEGRITY
    return FailureKind.DATABASE


def database_message(error: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and background link."""
    original = getattr(error, "orig", None) or error
    # A bare TimeoutError (asyncpg's connect timeout) says nothing: name it at least.
    text = str(original).strip() or type(original).__name__
    return " ".join(text.split())[:500]


def translate(error: sa_exc.SQLAlchemyError | OSError) -> RepositoryDatabaseError:
    """Our error for SQLAlchemy's, or for a driver's OSError (see ``ConnectionFailure``);
    raise it ``from error``."""
    message = database_message(error)
    statement = getattr(error, "statement", None)
    if is_unavailable(error):
        return DatabaseUnavailableError(f"database unavailable: {message}", statement=statement)
    if isinstance(error, sa_exc.IntegrityError):
        if is_unique_violation(error):
            message = f"unique constraint violated: {message}"
        return IntegrityConflictError(message, statement=statement)
    return RepositoryDatabaseError(message, statement=statement)
