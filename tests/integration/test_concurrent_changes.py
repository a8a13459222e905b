"""bulk_update / bulk_delete under concurrent writers, and transient failures run again.

A bulk change must change exactly what one ``UPDATE/DELETE ... WHERE`` would: a row another
transaction updates (or holds locked, then commits) while a batch waits for it is re-checked
and changed if it still matches, never silently skipped. A deadlock, serialization failure or
busy database is retried; inside the caller's transaction it raises TransactionRetryError.

What each call really changed is read from an audit table filled by a trigger (its own DDL per
database), not from what the call reports. Every test builds engines of its own on the
backend's test database, at the isolation level it is about, and checks the result from a
connection of its own.
"""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Integer, String, event, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import (
    BaseRepository,
    BulkOperationResult,
    RetryPolicy,
    TransactionRetryError,
    create_engine,
)

LEVELS = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
# Generous, and fast: the stress tests must end with every batch done, whatever the contention.
PATIENT = RetryPolicy(attempts=60, base_delay=0.002, max_delay=0.05)
WAIT_LIMIT_SECONDS = 10.0


class ConcurrencyBase(DeclarativeBase):
    pass


class Tracked(ConcurrencyBase):
    """Rows several writers change at once; ``tag`` says which call changed a row last."""

    __tablename__ = "tracked"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    grp: Mapped[int] = mapped_column(Integer, nullable=False)
    tag: Mapped[str] = mapped_column(String(40), nullable=False, default="new")
    note: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class Audit(ConcurrencyBase):
    """One row per row version a statement wrote to ``tracked`` (``new_tag`` None: deleted)."""

    __tablename__ = "tracked_audit"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    row_id: Mapped[int] = mapped_column(Integer, nullable=False)
    old_tag: Mapped[str] = mapped_column(String(40), nullable=False)
    new_tag: Mapped[str | None] = mapped_column(String(40))


_INSERT_UPDATE = (
    "INSERT INTO tracked_audit (row_id, old_tag, new_tag) VALUES (NEW.id, OLD.tag, NEW.tag)"
)
_INSERT_DELETE = (
    "INSERT INTO tracked_audit (row_id, old_tag, new_tag) VALUES (OLD.id, OLD.tag, NULL)"
)
TRIGGERS: dict[str, list[str]] = {
    "postgresql": [
        "CREATE OR REPLACE FUNCTION tracked_audit() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF TG_OP = 'DELETE' THEN {_INSERT_DELETE}; RETURN OLD; END IF; "
        f"{_INSERT_UPDATE}; RETURN NEW; END $$",
        "CREATE TRIGGER tracked_audit AFTER UPDATE OR DELETE ON tracked "
        "FOR EACH ROW EXECUTE FUNCTION tracked_audit()",
    ],
    "mysql": [
        f"CREATE TRIGGER tracked_audit_u AFTER UPDATE ON tracked FOR EACH ROW {_INSERT_UPDATE}",
        f"CREATE TRIGGER tracked_audit_d AFTER DELETE ON tracked FOR EACH ROW {_INSERT_DELETE}",
    ],
    "sqlite": [
        f"CREATE TRIGGER tracked_audit_u AFTER UPDATE ON tracked BEGIN {_INSERT_UPDATE}; END",
        f"CREATE TRIGGER tracked_audit_d AFTER DELETE ON tracked BEGIN {_INSERT_DELETE}; END",
    ],
}


@dataclass
class Stack:
    """Engines on one backend's test database, disposed of at the end of the test."""

    url: str
    dialect: str
    engines: list[AsyncEngine] = field(default_factory=list)
    driver_errors: list[str] = field(default_factory=list)
    """What the driver raised on any of these engines, to prove a failure really happened."""

    def engine(
        self,
        isolation: str | None = None,
        *,
        lock_wait_seconds: float | None = None,
        deadlock_timeout_ms: int | None = None,
    ) -> AsyncEngine:
        """An engine at ``isolation`` (None: the database's default).

        ``lock_wait_seconds``: how long a statement waits for a lock before failing
        transiently (SQLite's busy timeout; MariaDB's innodb_lock_wait_timeout, whole
        seconds, at least 1).
        ``deadlock_timeout_ms``: how soon PostgreSQL looks for a deadlock this connection
        waits in; the connection that looks first is the one aborted.
        """
        options: dict[str, Any] = {}
        if isolation is not None and self.dialect != "sqlite":
            options["isolation_level"] = isolation
        if self.dialect == "sqlite" and lock_wait_seconds is not None:
            options["connect_args"] = {"timeout": lock_wait_seconds}
        engine = create_engine(self.url, **options)
        settings: list[str] = []
        if self.dialect == "mysql" and lock_wait_seconds is not None:
            seconds = max(1, round(lock_wait_seconds))
            settings.append(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        if self.dialect == "postgresql" and deadlock_timeout_ms is not None:
            settings.append(f"SET deadlock_timeout = '{deadlock_timeout_ms}ms'")
        if settings:

            @event.listens_for(engine.sync_engine, "connect")
            def _configure(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                for statement in settings:
                    cursor.execute(statement)
                cursor.close()

        @event.listens_for(engine.sync_engine, "handle_error")
        def _record(context: Any) -> None:
            self.driver_errors.append(str(context.original_exception))

        self.engines.append(engine)
        return engine

    def repo(self, engine: AsyncEngine, retry: RetryPolicy = PATIENT) -> "Repo":
        return Repo(engine, retry)

    async def someone_waits_for_a_lock(self, probe: AsyncConnection) -> bool:
        if self.dialect == "postgresql":
            query = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        elif self.dialect == "mysql":
            query = (
                "SELECT count(*) FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                "WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()"
            )
        else:
            raise AssertionError("SQLite's lock waits cannot be observed from outside")
        return bool(await probe.scalar(text(query)))

    async def until_blocked(self, call: "asyncio.Task[Any]") -> None:
        """Return once ``call`` waits for a lock (SQLite: after a moment, still running)."""
        if self.dialect == "sqlite":
            await asyncio.sleep(0.3)
            assert not call.done(), "the call should be waiting for the database lock"
            return
        async with self.engine().connect() as probe:
            deadline = asyncio.get_running_loop().time() + WAIT_LIMIT_SECONDS
            while not await self.someone_waits_for_a_lock(probe):
                assert not call.done(), f"the call ended without waiting: {call.result()}"
                assert asyncio.get_running_loop().time() < deadline, "never blocked"
                # MariaDB refreshes innodb_trx only when nobody read it for 0.1 s.
                await asyncio.sleep(0.15 if self.dialect == "mysql" else 0.02)
                await probe.rollback()  # a fresh snapshot of the server's activity


class Repo:
    """A repository on a session of its own for each call, as concurrent requests have."""

    def __init__(self, engine: AsyncEngine, retry: RetryPolicy) -> None:
        self.engine = engine
        self.retry = retry

    @asynccontextmanager
    async def session(self) -> AsyncIterator[BaseRepository[Tracked, Any, Any]]:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield BaseRepository(Tracked, session, retry=self.retry)

    async def update(self, filters: dict[str, Any], tag: str, **kw: Any) -> BulkOperationResult:
        async with self.session() as repo:
            return await repo.bulk_update(filters, {"tag": tag}, **kw)

    async def delete(self, filters: dict[str, Any], **kw: Any) -> BulkOperationResult:
        async with self.session() as repo:
            return await repo.bulk_delete(filters, soft_delete=False, **kw)


@pytest.fixture
async def stack(db_url: str, engine: AsyncEngine) -> AsyncIterator[Stack]:
    """The tracked/audit tables with their triggers, fresh, and a way to make engines."""
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        await conn.run_sync(ConcurrencyBase.metadata.drop_all)
        await conn.run_sync(ConcurrencyBase.metadata.create_all)
        for statement in TRIGGERS[dialect]:
            await conn.exec_driver_sql(statement)
    built = Stack(db_url, dialect)
    try:
        yield built
    finally:
        for made in built.engines:
            await made.dispose()
    async with engine.begin() as conn:
        await conn.run_sync(ConcurrencyBase.metadata.drop_all)


async def seed(engine: AsyncEngine, groups: dict[int, int]) -> dict[int, list[int]]:
    """``groups``: group -> how many rows; returns group -> ids (interleaved across groups)."""
    rows: list[dict[str, Any]] = []
    by_group: dict[int, list[int]] = {g: [] for g in groups}
    next_id = 1
    remaining = dict(groups)
    while any(remaining.values()):
        for g in groups:
            if remaining[g]:
                rows.append({"id": next_id, "grp": g, "tag": "new", "note": 0})
                by_group[g].append(next_id)
                remaining[g] -= 1
                next_id += 1
    async with engine.begin() as conn:
        await conn.execute(Tracked.__table__.insert(), rows)
    return by_group


async def audit(engine: AsyncEngine) -> list[Audit]:
    async with AsyncSession(engine) as session:
        return list(await session.scalars(select(Audit).order_by(Audit.seq)))


async def rows(engine: AsyncEngine) -> dict[int, Tracked]:
    async with AsyncSession(engine) as session:
        return {r.id: r for r in await session.scalars(select(Tracked))}


def changed_by(entries: list[Audit], tag: str) -> list[int]:
    """Rows a call tagged ``tag`` really changed, one entry per change, in audit order."""
    return [a.row_id for a in entries if a.new_tag == tag and a.old_tag != tag]


def skip_levels_sqlite_lacks(stack: Stack, level: str) -> None:
    if stack.dialect == "sqlite" and level != "SERIALIZABLE":
        pytest.skip("SQLite has one isolation level, serializable (one writer at a time)")


@asynccontextmanager
async def holding(engine: AsyncEngine, *statements: str) -> AsyncIterator[AsyncConnection]:
    """A connection that ran ``statements`` in an open transaction, holding their locks until
    the block commits it (or rolls it back, when it raises)."""
    async with engine.connect() as conn:
        await conn.begin()
        for statement in statements:
            await conn.execute(text(statement))
        yield conn
        if conn.in_transaction():
            await conn.rollback()


# -- a row changed while its batch waits -------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 100])
@pytest.mark.parametrize("change", ["update", "delete"])
@pytest.mark.parametrize("level", LEVELS)
async def test_a_row_updated_while_its_batch_waits_is_still_changed(
    stack: Stack, level: str, change: str, batch_size: int
) -> None:
    skip_levels_sqlite_lacks(stack, level)
    plain = stack.engine()
    groups = await seed(plain, {1: 3, 2: 1})
    first, locked, third = groups[1]
    repo = stack.repo(stack.engine(level))

    # Another transaction updates a matching row (keeping it matching) and holds it...
    async with holding(plain, f"UPDATE tracked SET note = note + 1 WHERE id = {locked}") as x:
        if change == "update":
            call = asyncio.create_task(repo.update({"grp": 1}, "bulk", batch_size=batch_size))
        else:
            call = asyncio.create_task(repo.delete({"grp": 1}, batch_size=batch_size))
        await stack.until_blocked(call)
        # ... and commits while the batch waits for it: a new version of the row.
        await x.commit()
        result = await call

    if stack.dialect == "postgresql" and level != "READ COMMITTED":
        # The row changed after the batch's snapshot: it failed, and was run again.
        assert any("could not serialize" in e for e in stack.driver_errors), stack.driver_errors
    assert (result.success_count, result.error_count) == (3, 0), result.errors
    assert result.affected_ids == [first, locked, third]
    after = await rows(plain)
    entries = await audit(plain)
    if change == "update":
        assert sorted(changed_by(entries, "bulk")) == [first, locked, third]
        assert {after[i].tag for i in groups[1]} == {"bulk"}
        assert after[locked].note == 1  # the other transaction's change stands too
    else:
        assert sorted(a.row_id for a in entries if a.new_tag is None) == groups[1]
        assert set(after) == set(groups[2])
    assert after[groups[2][0]].tag == "new"


# -- several writers on overlapping rows -------------------------------------------------------


async def interfere(engine: AsyncEngine, ids: list[int], stop: asyncio.Event) -> int:
    """Until ``stop``: update one random row (keeping it matching), hold it a moment, commit.
    Returns how many of those transactions committed."""
    committed = 0
    chooser = random.Random(7)
    async with engine.connect() as conn:
        while not stop.is_set():
            row_id = chooser.choice(ids)
            try:
                await conn.begin()
                await conn.execute(
                    text("UPDATE tracked SET note = note + 1 WHERE id = :id"), {"id": row_id}
                )
                await asyncio.sleep(0.003)
                await conn.commit()
                committed += 1
            except sa_exc.DBAPIError:
                # A deadlock or lock timeout here is this helper's, not the library's.
                await conn.rollback()
            await asyncio.sleep(0.001)
    return committed


async def writers_with_interference(
    stack: Stack, calls: list[Callable[[], Awaitable[Any]]], ids: list[int]
) -> tuple[list[Any], int]:
    stop = asyncio.Event()
    background = asyncio.create_task(interfere(stack.engine(), ids, stop))
    try:
        results = await asyncio.wait_for(asyncio.gather(*(c() for c in calls)), 60)
    finally:
        stop.set()
        interfered = await background
    return results, interfered


# The groups each writer's filter takes in: every pair of writers shares rows.
FILTERS = [[0, 1, 2], [1, 2, 3], [0, 2, 3]]


@pytest.mark.parametrize("level", LEVELS)
async def test_concurrent_bulk_updates_change_every_matching_row(stack: Stack, level: str) -> None:
    skip_levels_sqlite_lacks(stack, level)
    plain = stack.engine()
    groups = await seed(plain, dict.fromkeys(range(4), 15))
    all_ids = sorted(i for ids in groups.values() for i in ids)
    repo = stack.repo(stack.engine(level))
    rounds = 3

    async def writer(k: int) -> list[tuple[str, BulkOperationResult]]:
        done = []
        for r in range(rounds):
            tag = f"w{k}-{r}"
            done.append((tag, await repo.update({"grp__in": FILTERS[k]}, tag, batch_size=7)))
        return done

    outcomes, interfered = await writers_with_interference(
        stack, [lambda k=k: writer(k) for k in range(len(FILTERS))], all_ids
    )

    entries = await audit(plain)
    for k, done in enumerate(outcomes):
        matching = sorted(i for g in FILTERS[k] for i in groups[g])
        for tag, result in done:
            assert result.error_count == 0, result.errors
            # Every matching row changed, exactly once, and the count says so.
            assert result.affected_ids == matching, tag
            assert result.success_count == len(matching)
            assert sorted(changed_by(entries, tag)) == matching, tag
    assert interfered > 0


# Each deleter has a group of its own (a row it skipped would stay) and shares two with the others.
DELETE_FILTERS = [[0, 3, 4], [1, 3, 4], [2, 3, 4]]


@pytest.mark.parametrize("level", LEVELS)
async def test_concurrent_bulk_deletes_account_for_every_row_once(stack: Stack, level: str) -> None:
    skip_levels_sqlite_lacks(stack, level)
    plain = stack.engine()
    groups = await seed(plain, dict.fromkeys(range(6), 15))
    all_ids = sorted(i for ids in groups.values() for i in ids)
    repo = stack.repo(stack.engine(level))

    async def deleter(k: int) -> BulkOperationResult:
        return await repo.delete({"grp__in": DELETE_FILTERS[k]}, batch_size=7)

    results, interfered = await writers_with_interference(
        stack, [lambda k=k: deleter(k) for k in range(len(DELETE_FILTERS))], all_ids
    )

    doomed = sorted(i for g in range(5) for i in groups[g])
    for k, result in enumerate(results):
        assert result.error_count == 0, result.errors
        assert result.success_count == len(result.affected_ids)
        assert set(groups[k]) <= set(result.affected_ids)  # its own rows: nobody else's
    claimed = sorted(i for r in results for i in r.affected_ids)
    # Each matching row deleted by exactly one call, none left behind, none other touched.
    assert claimed == doomed
    entries = await audit(plain)
    assert sorted(a.row_id for a in entries if a.new_tag is None) == doomed
    assert sorted(await rows(plain)) == groups[5]
    assert interfered > 0


# -- transient failures ------------------------------------------------------------------------


async def test_a_deadlocked_batch_is_run_again(stack: Stack) -> None:
    if stack.dialect == "sqlite":
        pytest.skip(
            "SQLite has one lock for the whole database: two writers never hold one lock "
            "each, so there is no deadlock to force (its busy timeout is tested below)"
        )
    # The bulk call looks for the deadlock first, so it is the one the database aborts.
    repo = stack.repo(stack.engine(deadlock_timeout_ms=200))
    other = stack.engine(deadlock_timeout_ms=10_000)
    groups = await seed(other, {1: 2, 2: 30})
    first, second = groups[1]
    # On MariaDB the transaction that changed fewer rows is aborted: the other one changes
    # many, one key at a time (a scan would lock every row it reads at REPEATABLE READ,
    # `first` too, and there would be no deadlock).
    heavy = [f"UPDATE tracked SET note = note + 1 WHERE id = {i}" for i in [*groups[2], second]]

    async with holding(other, *heavy) as x:
        call = asyncio.create_task(repo.update({"grp": 1}, "bulk"))
        await stack.until_blocked(call)  # holds `first`, waits for `second`
        await x.execute(text(f"UPDATE tracked SET note = note + 1 WHERE id = {first}"))
        await x.commit()
        result = await call

    assert any("deadlock" in e.lower() for e in stack.driver_errors), stack.driver_errors
    assert (result.success_count, result.error_count) == (2, 0), result.errors
    assert result.affected_ids == [first, second]
    after = await rows(other)
    assert (after[first].tag, after[first].note) == ("bulk", 1)
    assert (after[second].tag, after[second].note) == ("bulk", 1)
    assert sorted(changed_by(await audit(other), "bulk")) == [first, second]


async def test_a_batch_that_timed_out_waiting_for_a_lock_is_run_again(stack: Stack) -> None:
    if stack.dialect == "postgresql":
        pytest.skip(
            "PostgreSQL waits for row locks without a limit unless lock_timeout is set, "
            "and its expiry is the caller's own limit, not retried"
        )
    repo = stack.repo(
        stack.engine(lock_wait_seconds=1),
        RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.1),
    )
    plain = stack.engine()
    groups = await seed(plain, {1: 3})
    held_seconds = 1.4

    async with holding(plain, f"UPDATE tracked SET note = 5 WHERE id = {groups[1][1]}") as x:
        call = asyncio.create_task(repo.update({"grp": 1}, "bulk", batch_size=2))
        await asyncio.sleep(held_seconds)  # longer than the call may wait for the lock
        await x.commit()
        result = await call

    assert any("lock" in e.lower() for e in stack.driver_errors), stack.driver_errors
    assert (result.success_count, result.error_count) == (3, 0), result.errors
    assert sorted(changed_by(await audit(plain), "bulk")) == groups[1]
    assert (await rows(plain))[groups[1][1]].note == 5


async def test_a_transient_failure_is_reported_once_retries_are_spent(stack: Stack) -> None:
    if stack.dialect == "postgresql":
        pytest.skip("forced here through a lock timeout, which PostgreSQL does not retry")
    repo = stack.repo(stack.engine(lock_wait_seconds=0.2), RetryPolicy(attempts=2, base_delay=0))
    plain = stack.engine()
    groups = await seed(plain, {1: 4})
    ids = groups[1]

    # MariaDB: the first batch (ids[0:2]) lands, the second waits for ids[3] twice, in vain.
    # SQLite: the other writer holds the whole database, so both batches wait in vain.
    async with holding(plain, f"UPDATE tracked SET note = 5 WHERE id = {ids[3]}") as x:
        result = await repo.update({"grp": 1}, "bulk", batch_size=2)
        await x.commit()

    landed = ids[:2] if stack.dialect == "mysql" else []
    assert (result.success_count, result.error_count) == (len(landed), 4 - len(landed))
    assert result.affected_ids == landed
    # Each failure names its rows (and only after its tries were spent).
    assert [f.ids for f in result.failures] == [
        tuple(ids[i : i + 2]) for i in range(len(landed), 4, 2)
    ]
    assert all("after 2 tries" in f.message for f in result.failures), result.errors
    assert all("lock" in f.message.lower() for f in result.failures), result.errors
    assert sorted(changed_by(await audit(plain), "bulk")) == landed


async def test_a_transient_failure_in_the_callers_transaction_raises(stack: Stack) -> None:
    level = "REPEATABLE READ" if stack.dialect == "postgresql" else None
    retry_engine = stack.engine(level, lock_wait_seconds=1)
    plain = stack.engine()
    groups = await seed(plain, {1: 2})
    first, locked = groups[1]

    async def in_callers_transaction() -> None:
        async with AsyncSession(retry_engine) as session, session.begin():
            repo = BaseRepository(Tracked, session, retry=PATIENT)
            await repo.bulk_update({"grp": 1}, {"tag": "bulk"})

    async with holding(plain, f"UPDATE tracked SET note = 5 WHERE id = {locked}") as x:
        call = asyncio.create_task(in_callers_transaction())
        if stack.dialect == "postgresql":
            # REPEATABLE READ: the row changes after the call's snapshot; a serialization
            # failure once the lock is released. Elsewhere the wait for the lock times out.
            await stack.until_blocked(call)
            await x.commit()
        with pytest.raises(TransactionRetryError, match="run all of it again") as raised:
            await call
        if x.in_transaction():
            await x.commit()

    assert isinstance(raised.value.__cause__, sa_exc.DBAPIError)
    after = await rows(plain)
    assert {after[i].tag for i in (first, locked)} == {"new"}  # the caller's block rolled back
    assert changed_by(await audit(plain), "bulk") == []


async def test_a_busy_batch_of_bulk_create_is_run_again(stack: Stack) -> None:
    if stack.dialect == "postgresql":
        pytest.skip("forced here through a lock timeout, which PostgreSQL does not retry")
    engine = stack.engine(lock_wait_seconds=1)
    plain = stack.engine()
    # MariaDB: the pending row holds the key the batch needs; SQLite: the database lock.
    pending = "INSERT INTO tracked (id, grp, tag, note) VALUES (3, 9, 'pending', 0)"

    retry = RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.1)
    records = [{"id": i, "grp": 1, "tag": "new", "note": 0} for i in (1, 2, 3)]

    async with (
        holding(plain, pending) as x,
        AsyncSession(engine, expire_on_commit=False) as session,
    ):
        call = asyncio.create_task(
            BaseRepository(Tracked, session, retry=retry).bulk_create(records)
        )
        await asyncio.sleep(1.4)  # longer than the batch may wait
        await x.rollback()  # the key is free again
        result = await call

    assert any("lock" in e.lower() for e in stack.driver_errors), stack.driver_errors
    assert (result.success_count, result.error_count) == (3, 0), result.errors
    assert sorted(result.created_ids) == [1, 2, 3]
    assert sorted(await rows(plain)) == [1, 2, 3]


async def test_a_busy_bulk_create_in_the_callers_transaction_raises(stack: Stack) -> None:
    if stack.dialect == "postgresql":
        pytest.skip("forced here through a lock timeout, which PostgreSQL does not retry")
    engine = stack.engine(lock_wait_seconds=1)
    plain = stack.engine()
    pending = "INSERT INTO tracked (id, grp, tag, note) VALUES (3, 9, 'pending', 0)"
    records = [{"id": i, "grp": 1, "tag": "new", "note": 0} for i in (1, 2, 3)]

    async with (
        holding(plain, pending) as x,
        AsyncSession(engine, expire_on_commit=False) as session,
    ):
        with pytest.raises(TransactionRetryError, match="run all of it again"):
            async with session.begin():
                await BaseRepository(Tracked, session, retry=PATIENT).bulk_create(records)
        await x.rollback()

    assert any("lock" in e.lower() for e in stack.driver_errors), stack.driver_errors
    assert await rows(plain) == {}  # nothing of the caller's transaction stands


async def test_a_deadlocked_bulk_create_batch_is_run_again(stack: Stack) -> None:
    if stack.dialect == "sqlite":
        pytest.skip("SQLite has one lock for the whole database: no deadlock to force")
    engine = stack.engine(deadlock_timeout_ms=200)
    other = stack.engine(deadlock_timeout_ms=10_000)
    # The other writer holds key 2 (and, to be the heavier one on MariaDB, many more rows).
    pending = [
        f"INSERT INTO tracked (id, grp, tag, note) VALUES ({i}, 9, 'pending', 0)"
        for i in (2, *range(100, 130))
    ]
    records = [{"id": i, "grp": 1, "tag": "new", "note": 0} for i in (1, 2)]

    async with (
        holding(other, *pending) as x,
        AsyncSession(engine, expire_on_commit=False) as session,
    ):
        call = asyncio.create_task(
            BaseRepository(Tracked, session, retry=PATIENT).bulk_create(records)
        )
        await stack.until_blocked(call)  # has written key 1, waits for key 2
        await x.execute(text("INSERT INTO tracked (id, grp, tag, note) VALUES (1, 9, 'x', 0)"))
        await x.rollback()  # both keys free again: the call's next try can write them
        result = await call

    assert any("deadlock" in e.lower() for e in stack.driver_errors), stack.driver_errors
    assert (result.success_count, result.error_count) == (2, 0), result.errors
    assert result.created_ids == [1, 2]
    assert sorted(await rows(other)) == [1, 2]
