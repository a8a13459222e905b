"""The one boundary where SQLAlchemy/driver errors become baserepo's."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from ._results import FailureKind
from .exceptions import DatabaseUnavailableError, IntegrityConflictError, RepositoryDatabaseError

__all__ = [
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


def is_unavailable(error: BaseException) -> bool:
    """The database could not be reached or the connection failed: no record is at fault."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    if is_connection_state(getattr(getattr(error, "orig", None), "sqlstate", None)):
        return True
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionError | OSError) and not isinstance(
            cause, FileNotFoundError
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


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
    text = str(original).strip()
    return " ".join(text.split())[:500]


def translate(error: sa_exc.SQLAlchemyError) -> RepositoryDatabaseError:
    """Our error for SQLAlchemy's; raise it ``from error``."""
    message = database_message(error)
    statement = getattr(error, "statement", None)
    if is_unavailable(error):
        return DatabaseUnavailableError(f"database unavailable: {message}", statement=statement)
    if isinstance(error, sa_exc.IntegrityError):
        if is_unique_violation(error):
            message = f"unique constraint violated: {message}"
        return IntegrityConflictError(message, statement=statement)
    return RepositoryDatabaseError(message, statement=statement)
