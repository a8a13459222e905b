"""The errors baserepo raises.

Every error derives from :class:`BaseRepoError`, so one ``except`` catches them all::

    BaseRepoError
     ├── BulkOperationError        a bulk call stopped midway; ``result`` accounts for every
     │                             record it took, ``__cause__`` says why it stopped
     ├── ConfigurationError        the model, engine or call cannot work as set up
     │    └── MissingDependencyError   a driver or client library the call needs is not
     │                                 installed; names the extra (also an ``ImportError``)
     ├── InvalidFilterError        unknown field or lookup, or a value of the wrong shape or
     │                             not fitting its column's type (also a ``ValueError``)
     ├── MultipleRowsError         get_or_create / update_or_create found more than one
     │                             matching row (also a ``LookupError``)
     ├── InvalidCursorError        a ``page(after=...)`` cursor that is damaged, or made by
     │                             another query's order (also a ``ValueError``)
     ├── RecordValidationError     a record names an unknown column, lacks a required one
     │                             or holds a value of the wrong type (also a ``ValueError``)
     └── RepositoryDatabaseError   the database refused or failed; ``__cause__`` is the
          │                        SQLAlchemy error
          ├── IntegrityConflictError   a constraint (unique, foreign key, not null) refused it
          ├── DatabaseUnavailableError the database could not be reached (refused, unknown
          │                            host, connect timeout, hung up) or the connection
          │                            died; whatever the driver raised is ``__cause__``
          └── TransactionRetryError    a deadlock, serialization failure or busy database
                                       aborted a batch inside the caller's transaction:
                                       the caller must run the whole transaction again

Bulk operations report a refused record or batch in :class:`~baserepo.BulkOperationResult`
and go on; a transient failure (deadlock, serialization failure, busy database) of a batch they
own is retried first. They raise the errors above when nothing could be done at all (bad
arguments, the database unreachable before anything was written), :class:`BulkOperationError`
when the call had to stop after some work (the input or the progress callback raised, the
database went away: its ``result`` says exactly what was committed), and
:class:`TransactionRetryError` when a transient failure struck a batch inside the caller's
transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._results import BulkOperationResult

__all__ = [
    "BaseRepoError",
    "BulkOperationError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "IntegrityConflictError",
    "InvalidCursorError",
    "InvalidFilterError",
    "MissingDependencyError",
    "MultipleRowsError",
    "RecordValidationError",
    "RepositoryDatabaseError",
    "TransactionRetryError",
]


class BaseRepoError(Exception):
    """Root of every error baserepo raises."""


class BulkOperationError(BaseRepoError):
    """A bulk call stopped before the end of its input; ``result`` is what it did until then.

    ``result`` accounts for every record the call took from the input (created, or reported
    with its reason; records of the interrupted batch are reported too), so
    ``result.total`` is where to resume: ``data[exc.result.total:]`` for a list, the next
    item for a generator. ``__cause__`` is why it stopped: the exception of your iterable or
    progress callback as it was raised, or :class:`DatabaseUnavailableError` (whose own
    cause is SQLAlchemy's error) when the database went away.
    """

    def __init__(self, message: str, *, result: BulkOperationResult) -> None:
        self.result = result
        super().__init__(message)


class ConfigurationError(BaseRepoError):
    """The model, engine or call cannot work as set up (composite key, unpatched SQLite...)."""


class MissingDependencyError(ConfigurationError, ImportError):
    """A database driver or client library that the call needs is not installed.

    The message names what needs it and how to install it, e.g. ``postgresql+asyncpg needs
    asyncpg, which is not installed: pip install 'baserepo[postgres]'``. ``name`` is the
    missing module (as on any ``ImportError``), ``extra`` the baserepo extra that installs it
    (``None`` for a dependency baserepo always requires). ``__cause__`` is the original
    ``ModuleNotFoundError``.
    """

    def __init__(self, message: str, *, name: str, extra: str | None) -> None:
        self.extra = extra
        # ImportError's own __init__ (next in the MRO after BaseRepoError) keeps ``name``.
        super().__init__(message, name=name)


class InvalidFilterError(BaseRepoError, ValueError):
    """A filter key names an unknown field or lookup, or its value has the wrong shape or does
    not fit its column's type (docs/filters.md); ``key`` is the filter key at fault."""

    def __init__(self, key: str, message: str, *, valid: Sequence[str] = ()) -> None:
        self.key = key
        self.valid = tuple(valid)
        text = f"filter {key!r}: {message}"
        if valid:
            text += f" (valid: {', '.join(valid)})"
        super().__init__(text)


class MultipleRowsError(BaseRepoError, LookupError):
    """A call that works on one row (get_or_create, update_or_create) found several."""


class InvalidCursorError(BaseRepoError, ValueError):
    """A ``page(after=...)`` cursor that was altered, truncated, or made by a page of another
    model or another ``order_by``: refused rather than answered with some other page."""


class RecordValidationError(BaseRepoError, ValueError):
    """A record cannot be written as given; ``problems`` maps each field at fault to why."""

    def __init__(self, problems: Mapping[str, str], *, index: int | None = None) -> None:
        self.problems = dict(problems)
        self.index = index
        where = f"record {index}: " if index is not None else ""
        detail = "; ".join(f"field {field!r}: {why}" for field, why in self.problems.items())
        super().__init__(where + detail)


class RepositoryDatabaseError(BaseRepoError):
    """The database refused or failed the statement; ``__cause__`` holds SQLAlchemy's error."""

    def __init__(self, message: str, *, statement: str | None = None, detail: Any = None) -> None:
        self.statement = statement
        self.detail = detail
        super().__init__(message)


class IntegrityConflictError(RepositoryDatabaseError):
    """A constraint refused the write: unique, foreign key, not null or check."""

    @property
    def is_unique_violation(self) -> bool:
        return "unique" in str(self).lower() or "duplicate" in str(self).lower()


class DatabaseUnavailableError(RepositoryDatabaseError):
    """The database could not be reached, or the connection failed, so nothing was written.

    Raised for every driver alike: a refused connection, a host name that does not resolve,
    a connect timeout, a server that hangs up, or a connection lost mid-call. ``__cause__``
    is what the driver or SQLAlchemy raised (asyncpg's own ``ConnectionRefusedError`` or
    ``socket.gaierror`` included). Not raised for a SQLite file that cannot be opened: that
    is a wrong path, a plain :class:`RepositoryDatabaseError`.
    """


class TransactionRetryError(RepositoryDatabaseError):
    """A transient failure (deadlock, serialization failure, busy database) struck a bulk
    batch inside a transaction the caller began, so baserepo could not run the batch again.

    Outside a caller's transaction baserepo retries such a batch itself (see
    :class:`~baserepo.RetryPolicy`). Inside one it cannot: PostgreSQL aborts the whole
    transaction on a serialization failure and MariaDB rolls it back on a deadlock. Roll your
    transaction back and run all of it again::

        for attempt in range(5):
            try:
                async with session.begin():
                    await repo.bulk_update({"status": "new"}, {"status": "queued"})
                break
            except TransactionRetryError:
                continue
    """
