"""Transient failures of a batch: which errors they are, and how a batch is tried again.

A deadlock, a serialization failure or a busy database says nothing about the rows: the same
batch, run again a moment later, usually succeeds. A batch that runs in a transaction of its
own is therefore run again, after a jittered, exponentially growing wait, up to
``RetryPolicy.attempts`` tries; only then is it reported. A batch inside the caller's
transaction cannot be: PostgreSQL and MariaDB abort (or roll back) the whole transaction, so
the caller gets :class:`~baserepo.TransactionRetryError` and must retry all of it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

from .._errors import database_message
from .._transactions import caller_owns_transaction
from ..exceptions import TransactionRetryError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["DEFAULT_RETRY", "BatchAttempts", "RetryPolicy", "is_transient"]

# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected.
_PG_TRANSIENT = frozenset({"40001", "40P01"})
# MySQL/MariaDB error codes: deadlock (ER_LOCK_DEADLOCK), lock wait timeout
# (ER_LOCK_WAIT_TIMEOUT), and MariaDB 10.6+'s serialization failure under
# innodb_snapshot_isolation (ER_CHECKREAD, "Record has changed since last read").
_MYSQL_TRANSIENT = frozenset({1213, 1205, 1020})
# SQLite primary result codes (an extended code keeps them in its low byte): SQLITE_BUSY
# ("database is locked", also BUSY_SNAPSHOT in WAL mode), SQLITE_LOCKED (shared cache).
_SQLITE_TRANSIENT = frozenset({5, 6})
_SQLITE_TRANSIENT_TEXT = ("database is locked", "database table is locked")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a bulk batch that failed transiently (deadlock, serialization failure, busy
    database) is tried again before it is reported.

    The wait before try ``n + 1`` is drawn uniformly from ``[0, min(max_delay, base_delay *
    2 ** (n - 1))]`` ("full jitter": writers that collided do not collide again in step).
    The default gives up after 6 tries and at most 1.55 s of waiting in all.

    Example::

        repo = BaseRepository(User, session, retry=RetryPolicy(attempts=10, max_delay=2.0))
        repo = BaseRepository(User, session, retry=RetryPolicy(attempts=1))  # never retry
    """

    attempts: int = 6
    """Tries per batch, the first one included; 1 reports the first failure."""
    base_delay: float = 0.05
    """Seconds: the longest first wait; each later wait may be twice as long as the one before."""
    max_delay: float = 1.0
    """Seconds: no single wait is longer."""

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            raise TypeError(f"attempts must be an int, got {type(self.attempts).__name__}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError(
                f"need 0 <= base_delay <= max_delay, got {self.base_delay} and {self.max_delay}"
            )

    def delay(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``failures``-th failed try (1 for the first)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 62))
        return draw() * ceiling


DEFAULT_RETRY = RetryPolicy()


def is_transient(error: BaseException) -> bool:
    """A deadlock, serialization failure or busy database, read from the driver's own code.

    The chain of causes is searched too: on MariaDB a deadlock rolls back the whole
    transaction, and rolling back to the batch's SAVEPOINT then fails with an error of its
    own whose context is the deadlock.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and _driver_says_transient(current.orig):
            return True
        current = current.__cause__ or current.__context__
    return False


def _driver_says_transient(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    code = getattr(orig, "sqlite_errorcode", None)  # sqlite3 (and so aiosqlite), Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_TRANSIENT
    # asyncmy, aiomysql, PyMySQL and mysqlclient: args == (error code, message). Read before
    # sqlstate, which asyncmy has too but which is HY000 for a lock wait timeout.
    first = orig.args[0] if orig.args else None
    if isinstance(first, int) and not isinstance(first, bool):
        return first in _MYSQL_TRANSIENT
    # asyncpg (through SQLAlchemy's adapter) and psycopg 3 call it sqlstate, psycopg2 pgcode.
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str):
        return state in _PG_TRANSIENT
    return str(orig).strip().lower().startswith(_SQLITE_TRANSIENT_TEXT)


class BatchAttempts:
    """The tries of one batch: decides, after each failure, whether to run it again."""

    def __init__(self, policy: RetryPolicy, session: AsyncSession) -> None:
        self._policy = policy
        # Decided before the batch runs: a failure may leave the session's state unclear.
        self._in_caller_transaction = caller_owns_transaction(session)
        self._tries = 1

    @property
    def tries(self) -> int:
        """Tries made so far, the one that just failed included."""
        return self._tries

    async def again(self, error: BaseException) -> bool:
        """After a failed try: True (having waited) if the batch should run again, False if
        the failure is to be reported.

        Raises:
            TransactionRetryError: the failure was transient but struck the caller's
                transaction, which only the caller can run again.
        """
        if not is_transient(error):
            return False
        if self._in_caller_transaction:
            raise TransactionRetryError(
                "a deadlock, serialization failure or busy database aborted a batch inside "
                "your transaction; roll the transaction back and run all of it again: "
                f"{database_message(error)}",
                statement=getattr(error, "statement", None),
            ) from error
        if self._tries >= self._policy.attempts:
            return False
        await asyncio.sleep(self._policy.delay(self._tries))
        self._tries += 1
        return True
