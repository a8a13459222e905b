"""The errors baserepo raises.

Every error derives from :class:`BaseRepoError`, so one ``except`` catches them all::

    BaseRepoError
     ├── ConfigurationError        the model, engine or call cannot work as set up
     ├── InvalidFilterError        unknown field or lookup, or a value of the wrong shape
     │                             (also a ``ValueError``)
     ├── RecordValidationError     a record names an unknown column, lacks a required one
     │                             or holds a value of the wrong type (also a ``ValueError``)
     └── RepositoryDatabaseError   the database refused or failed; ``__cause__`` is the
          │                        SQLAlchemy error
          ├── IntegrityConflictError   a constraint (unique, foreign key, not null) refused it
          ├── DatabaseUnavailableError the database could not be reached at all
          └── TransactionRetryError    a deadlock, serialization failure or busy database
                                       aborted a batch inside the caller's transaction:
                                       the caller must run the whole transaction again

Bulk operations raise only when nothing could be done at all (bad arguments, the database
unreachable before the first batch) or when a transient failure struck a batch inside the
caller's transaction (:class:`TransactionRetryError`); everything else is reported per record
in :class:`~baserepo.BulkOperationResult`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "BaseRepoError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "IntegrityConflictError",
    "InvalidFilterError",
    "RecordValidationError",
    "RepositoryDatabaseError",
    "TransactionRetryError",
]


class BaseRepoError(Exception):
    """Root of every error baserepo raises."""


class ConfigurationError(BaseRepoError):
    """The model, engine or call cannot work as set up (composite key, unpatched SQLite...)."""


class InvalidFilterError(BaseRepoError, ValueError):
    """A filter key names an unknown field or lookup, or its value has the wrong shape."""

    def __init__(self, key: str, message: str, *, valid: Sequence[str] = ()) -> None:
        self.key = key
        self.valid = tuple(valid)
        text = f"filter {key!r}: {message}"
        if valid:
            text += f" (valid: {', '.join(valid)})"
        super().__init__(text)


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
    """The database could not be reached, so nothing was written."""


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
