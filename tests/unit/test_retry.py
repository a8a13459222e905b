"""RetryPolicy's waits and which driver errors count as transient.

The errors are the drivers' own exception classes (SQLite's from a real lock conflict);
tests/integration/test_concurrent_changes.py forces each failure on a real database.
"""

import sqlite3
from pathlib import Path

import asyncmy.errors
import asyncpg.exceptions
import pytest
from sqlalchemy import exc as sa_exc

from baserepo import RetryPolicy
from baserepo._bulk._retry import DEFAULT_RETRY, is_transient


def wrapped(orig: BaseException) -> sa_exc.DBAPIError:
    """As SQLAlchemy raises it: the driver's exception in ``.orig``."""
    return sa_exc.OperationalError("UPDATE t SET v = 1", None, orig)


def test_waits_double_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=8, base_delay=0.05, max_delay=1.0)
    ceilings = [policy.delay(n, draw=lambda: 1.0) for n in range(1, 8)]
    assert ceilings == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(3, draw=lambda: 0.0) == 0.0
    assert policy.delay(3, draw=lambda: 0.5) == pytest.approx(0.1)  # jitter: a share of it
    assert policy.delay(10_000, draw=lambda: 1.0) == 1.0  # no overflow however long it ran


def test_the_default_waits_at_most_a_second_and_a_half_in_all() -> None:
    waits = [DEFAULT_RETRY.delay(n, draw=lambda: 1.0) for n in range(1, DEFAULT_RETRY.attempts)]
    assert DEFAULT_RETRY.attempts == 6
    assert sum(waits) == pytest.approx(1.55)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 2.5}, TypeError),
        ({"attempts": True}, TypeError),
        ({"base_delay": -1}, ValueError),
        ({"base_delay": 2.0, "max_delay": 1.0}, ValueError),
    ],
)
def test_a_policy_that_cannot_work_is_refused(
    arguments: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        RetryPolicy(**arguments)  # type: ignore[arg-type]


def test_the_repository_refuses_a_retry_that_is_not_a_policy() -> None:
    from baserepo import BaseRepository
    from tests.models import User

    with pytest.raises(TypeError, match="RetryPolicy"):
        BaseRepository(User, None, retry=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("orig", "transient"),
    [
        (asyncpg.exceptions.SerializationError("could not serialize access"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.LockNotAvailableError("lock timeout"), False),
        (asyncmy.errors.OperationalError(1213, "Deadlock found"), True),
        (asyncmy.errors.OperationalError(1205, "Lock wait timeout exceeded"), True),
        (asyncmy.errors.OperationalError(1020, "Record has changed since last read"), True),
        (asyncmy.errors.IntegrityError(1062, "Duplicate entry"), False),
        (sqlite3.OperationalError("no such table: t"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_transient_errors_are_told_by_the_drivers_code(
    orig: BaseException, transient: bool
) -> None:
    assert is_transient(wrapped(orig)) is transient


def test_asyncpg_errors_as_sqlalchemy_adapts_them() -> None:
    # SQLAlchemy's asyncpg adapter raises its own classes, carrying the SQLSTATE over.
    from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

    adapted = AsyncAdapt_asyncpg_dbapi.OperationalError("could not serialize access")
    adapted.sqlstate = "40001"
    assert is_transient(wrapped(adapted))
    adapted.sqlstate = "23505"
    assert not is_transient(wrapped(adapted))


def test_a_busy_sqlite_database_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("CREATE TABLE t (v INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            other.execute("INSERT INTO t VALUES (1)")
    finally:
        holder.close()
        other.close()
    assert busy.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
    assert is_transient(wrapped(busy.value))


def test_a_deadlock_behind_a_failed_savepoint_rollback_is_transient() -> None:
    # MariaDB rolls the whole transaction back on a deadlock; rolling back to the batch's
    # SAVEPOINT then fails with an error of its own, raised while handling the deadlock.
    missing = wrapped(asyncmy.errors.OperationalError(1305, "SAVEPOINT does not exist"))

    def roll_back_after_a_deadlock() -> None:
        try:
            raise wrapped(asyncmy.errors.OperationalError(1213, "Deadlock found"))
        except sa_exc.DBAPIError:
            raise missing  # noqa: B904 (implicit chaining is what SQLAlchemy leaves)

    with pytest.raises(sa_exc.DBAPIError) as raised:
        roll_back_after_a_deadlock()
    assert raised.value is missing
    assert is_transient(raised.value)
    assert not is_transient(wrapped(asyncmy.errors.OperationalError(1305, "no SAVEPOINT")))


def test_errors_without_a_driver_error_are_not_transient() -> None:
    assert not is_transient(ValueError("database is locked"))
    assert not is_transient(sa_exc.InvalidRequestError("database is locked"))
