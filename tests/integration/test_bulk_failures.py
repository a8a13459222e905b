"""How a bulk call fails: what raises, what is reported, and that the accounting survives.

Connections are broken for real: the server terminates them (``pg_terminate_backend``,
MariaDB's ``KILL``) while a call runs. SQLite has no connection to break, so those tests run
on the servers only.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import Integer, String, UniqueConstraint, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from baserepo import (
    BaseRepository,
    BulkOperationError,
    ConfigurationError,
    DatabaseUnavailableError,
    EventBus,
    EventType,
    FailureKind,
    RepositoryEvent,
    create_engine,
)
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from baserepo._errors import translate
from baserepo.testing import RecordingEventBus
from tests.integration.test_bulk_create import TAKEN, check_accounting, seed_taken, user
from tests.models import User

CREATED = None
NOT_ATTEMPTED = FailureKind.NOT_ATTEMPTED
UNAVAILABLE = FailureKind.UNAVAILABLE
INTEGRITY = FailureKind.INTEGRITY
CONFLICT = FailureKind.CONFLICT


class Boom(Exception):
    """The caller's own failure."""


def on_a_server(engine: AsyncEngine) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no connection a server could break")


async def count_users(factory: async_sessionmaker[AsyncSession]) -> int:
    async with factory() as fresh:
        return await fresh.scalar(select(func.count()).select_from(User)) or 0


async def _kill(conn: AsyncConnection, ids: list[int]) -> None:
    for backend in ids:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        else:
            await conn.execute(text(f"KILL {int(backend)}"))


async def kill_other_connections(db_url: str) -> None:
    """Terminate every other connection to the test database, as a server restart would."""
    admin = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            if conn.dialect.name == "postgresql":
                others = text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            else:
                others = text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            await _kill(conn, list((await conn.execute(others)).scalars()))
            for _ in range(100):  # the server needs a moment to end them
                if not list((await conn.execute(others)).scalars()):
                    return
                await asyncio.sleep(0.05)
    finally:
        await admin.dispose()


# -- the input or the progress callback fails midway (9.7) ------------------------------------


def _failing_generator(total: int) -> Iterator[dict[str, Any]]:
    for i in range(total):
        yield user(i)
    raise Boom("the source broke")


async def _failing_async_generator(total: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(total):
        yield user(i)
    raise Boom("the source broke")


@pytest.mark.parametrize("source", [_failing_generator, _failing_async_generator])
async def test_an_input_that_raises_midway_keeps_the_accounting(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], source: Any
) -> None:
    # 25 records then an exception: batches 0-9 and 10-19 land, 20-24 are taken but never
    # written (their batch was not full when the input broke).
    with pytest.raises(BulkOperationError) as caught:
        await BaseRepository(User, session).bulk_create(source(25), batch_size=10)

    assert isinstance(caught.value.__cause__, Boom)
    result = caught.value.result
    records = [user(i) for i in range(25)]
    expected = [CREATED] * 20 + [NOT_ATTEMPTED] * 5
    await check_accounting(result, records, expected, session_factory)
    assert result.failures[0].record == records[20]  # kept so the caller can retry them
    assert "Boom" in result.failures[0].message


async def test_an_input_that_raises_at_once_is_a_bulk_operation_error(
    session: AsyncSession,
) -> None:
    with pytest.raises(BulkOperationError) as caught:
        await BaseRepository(User, session).bulk_create(_failing_generator(0))
    assert isinstance(caught.value.__cause__, Boom)
    assert caught.value.result.total == 0


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_a_progress_callback_that_raises_keeps_the_accounting(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], asynchronous: bool
) -> None:
    def report(done: int) -> None:
        if done > 10:
            raise Boom(f"cannot report {done}")

    async def report_async(done: int) -> None:
        report(done)

    records = [user(i) for i in range(30)]
    with pytest.raises(BulkOperationError) as caught:
        await BaseRepository(User, session).bulk_create(
            records, batch_size=10, progress=report_async if asynchronous else report
        )

    assert isinstance(caught.value.__cause__, Boom)
    # Batch 10-19 was committed before its report failed; 20-29 were never taken.
    result = caught.value.result
    await check_accounting(result, records[:20], [CREATED] * 20, session_factory)
    assert await count_users(session_factory) == 20


@pytest.mark.parametrize("operation", ["update", "delete"])
async def test_bulk_update_and_delete_keep_the_accounting_when_progress_raises(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], operation: str
) -> None:
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i, department="A") for i in range(30)])

    def report(done: int) -> None:
        if done > 10:
            raise Boom("no")

    if operation == "update":
        call = repo.bulk_update({"department": "A"}, {"salary": 1}, batch_size=10, progress=report)
    else:
        call = repo.bulk_delete({"department": "A"}, batch_size=10, progress=report)
    with pytest.raises(BulkOperationError) as caught:
        await call

    assert isinstance(caught.value.__cause__, Boom)
    result = caught.value.result
    assert result.success_count == 20 == len(result.affected_ids)
    async with session_factory() as fresh:
        if operation == "update":
            changed = select(User.id).where(User.salary == 1)
        else:
            changed = select(User.id).where(User.deleted_at.is_not(None))
        assert sorted((await fresh.execute(changed)).scalars()) == sorted(result.affected_ids)


async def test_cancellation_propagates_as_cancelled_error(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    first_batch_done = asyncio.Event()

    async def records() -> AsyncIterator[dict[str, Any]]:
        for i in range(10):
            yield user(i)
        first_batch_done.set()
        await asyncio.Event().wait()  # the caller gives up here
        yield user(10)

    task = asyncio.create_task(BaseRepository(User, session).bulk_create(records(), batch_size=5))
    await asyncio.wait_for(first_batch_done.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await count_users(session_factory) == 10


# -- the database goes away midway (9.7, 8.5) -------------------------------------------------


async def test_the_database_going_away_after_some_batches_raises_with_the_result(
    engine: AsyncEngine,
    db_url: str,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    on_a_server(engine)

    async def kill_after_first_batch(done: int) -> None:
        if done == 10:
            await kill_other_connections(db_url)

    records = [user(i) for i in range(30)]
    try:
        with pytest.raises(BulkOperationError) as caught:
            await BaseRepository(User, session).bulk_create(
                records, batch_size=10, progress=kill_after_first_batch
            )
        assert isinstance(caught.value.__cause__, DatabaseUnavailableError)
        # 0-9 committed; 10-19 unavailable, no culprit named; 20-29 never taken.
        result = caught.value.result
        expected = [CREATED] * 10 + [UNAVAILABLE] * 10
        await check_accounting(result, records[:20], expected, session_factory)
    finally:
        await engine.dispose()  # the pool's idle connections were killed too


async def test_bulk_update_raises_with_the_result_when_the_database_goes_away(
    engine: AsyncEngine,
    db_url: str,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    on_a_server(engine)
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i, department="A") for i in range(30)])

    async def kill_after_first_batch(done: int) -> None:
        if done == 10:
            await kill_other_connections(db_url)

    try:
        with pytest.raises(BulkOperationError) as caught:
            await repo.bulk_update(
                {"department": "A"}, {"salary": 1}, batch_size=10, progress=kill_after_first_batch
            )
        assert isinstance(caught.value.__cause__, DatabaseUnavailableError)
        result = caught.value.result
        assert result.success_count == 10
        assert all(f.kind is UNAVAILABLE for f in result.failures)
        async with session_factory() as fresh:
            changed = select(User.id).where(User.salary == 1)
            assert sorted((await fresh.execute(changed)).scalars()) == result.affected_ids
    finally:
        await engine.dispose()


async def test_bulk_upsert_raises_with_the_result_when_the_database_goes_away(
    engine: AsyncEngine,
    db_url: str,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    on_a_server(engine)
    bulk = bulk_dialect_for(engine.sync_engine.dialect)
    if isinstance(bulk, AsyncpgPostgresqlDialect):  # the engine is this test's own
        bulk.stage_min_rows = 1  # through the staging table's raw COPY, as large batches go
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i, salary=1) for i in range(15)])

    async def kill_after_first_batch(done: int) -> None:
        if done == 10:
            await kill_other_connections(db_url)

    records = [user(i, salary=2) for i in range(30)]  # 15 existing, then 15 new
    try:
        with pytest.raises(BulkOperationError) as caught:
            await repo.bulk_upsert(
                records, unique_fields=["email"], batch_size=10, progress=kill_after_first_batch
            )
        assert isinstance(caught.value.__cause__, DatabaseUnavailableError)
        result = caught.value.result
        assert (len(result.updated_ids), result.created_ids) == (10, [])
        # 0-9 updated; 10-19 unavailable, no culprit named; 20-29 never taken (as bulk_create).
        assert [f.index for f in result.failures] == list(range(10, 20))
        assert {f.kind for f in result.failures} == {UNAVAILABLE}
        async with session_factory() as fresh:
            written = select(User.id).where(User.salary == 2)
            assert sorted((await fresh.execute(written)).scalars()) == sorted(result.updated_ids)
    finally:
        await engine.dispose()


async def test_bulk_update_rows_raises_with_the_result_when_the_database_goes_away(
    engine: AsyncEngine,
    db_url: str,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    on_a_server(engine)
    created = await BaseRepository(User, session).bulk_create([user(i) for i in range(30)])
    bus = EventBus()
    killed: list[bool] = []

    async def kill_after_first_batch(event: RepositoryEvent) -> None:
        if not killed:
            killed.append(True)
            await kill_other_connections(db_url)

    bus.subscribe(EventType.UPDATED, kill_after_first_batch)
    rows = [{"id": key, "salary": 7} for key in created.created_ids]
    try:
        with pytest.raises(BulkOperationError) as caught:
            await BaseRepository(User, session, event_bus=bus).bulk_update_rows(rows, batch_size=10)
        assert isinstance(caught.value.__cause__, DatabaseUnavailableError)
        result = caught.value.result
        assert result.affected_ids == created.created_ids[:10]
        # It reads its whole input first: the rows of batches never run are reported too.
        assert [f.index for f in result.failures] == list(range(10, 30))
        assert {f.kind for f in result.failures[:10]} == {UNAVAILABLE}
        assert {f.kind for f in result.failures[10:]} == {NOT_ATTEMPTED}
        async with session_factory() as fresh:
            written = select(User.id).where(User.salary == 7)
            assert sorted((await fresh.execute(written)).scalars()) == result.affected_ids
    finally:
        await engine.dispose()


async def _wait_for_blocked_copy(admin: AsyncConnection) -> int:
    """The pid of the backend waiting for the lock on users (the COPY), once it waits."""
    for _ in range(200):
        pid = await admin.scalar(
            text(
                "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'users' AND NOT l.granted"
            )
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the COPY never waited for the lock")


@pytest.mark.parametrize("committed_batches", [0, 1])
async def test_a_backend_killed_mid_copy_is_unavailable_and_its_connection_never_reused(
    engine: AsyncEngine,
    db_url: str,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    committed_batches: int,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    admin_engine = create_async_engine(db_url, poolclass=NullPool)
    async with admin_engine.connect() as blocker, admin_engine.connect() as admin:
        # A lock the COPY must wait for (SHARE blocks writers only): the backend can then be
        # terminated while it is inside COPY, not before or after.
        lock_taken = asyncio.Event()

        async def lock_before_batch(done: int) -> None:
            if done == 100 * committed_batches and not lock_taken.is_set():
                await blocker.execute(text("LOCK TABLE users IN SHARE MODE"))
                lock_taken.set()

        if committed_batches == 0:
            await lock_before_batch(0)
        records = [user(i) for i in range(300)]
        call = asyncio.create_task(
            BaseRepository(User, session).bulk_create(
                records, batch_size=100, progress=lock_before_batch
            )
        )
        await asyncio.wait_for(lock_taken.wait(), 10)
        pid = await _wait_for_blocked_copy(admin)
        await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await blocker.rollback()
        if committed_batches == 0:
            with pytest.raises(DatabaseUnavailableError):
                await call
        else:
            with pytest.raises(BulkOperationError) as caught:
                await call
            result = caught.value.result
            # The whole batch is the connection's failure: no record is blamed.
            expected = [CREATED] * 100 + [UNAVAILABLE] * 100
            await check_accounting(result, records[:200], expected, session_factory)
    await admin_engine.dispose()

    # Every new session on the same engine works at once: the dead connection was dropped.
    pool_size = engine.pool.size()  # type: ignore[attr-defined]
    for _ in range(pool_size + 1):
        async with session_factory() as fresh:
            assert len(await BaseRepository(User, fresh).list()) == 100 * committed_batches
    # And the session of the failed call is usable again too.
    assert await BaseRepository(User, session).count() == 100 * committed_batches


async def test_a_prepared_statement_gone_missing_blames_no_record_and_retires_the_connection(
    db_url: str, engine: AsyncEngine, tables: None
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("about asyncpg's cached prepared statements")
    # One connection, so the next session surely gets the one that failed if it is pooled.
    single = create_engine(db_url, pool_size=1, max_overflow=0)
    records = [user(i) for i in range(300)]
    try:
        async with AsyncSession(single) as session:

            async def forget_prepared_statements(done: int) -> None:
                if done == 100:  # what a pooler switching server connections amounts to
                    await session.execute(text("DEALLOCATE ALL"))

            await session.begin()
            with pytest.raises(BulkOperationError) as caught:
                await BaseRepository(User, session).bulk_create(
                    records, batch_size=100, progress=forget_prepared_statements
                )
            await session.rollback()
        result = caught.value.result
        assert result.success_count == 100
        assert {f.kind for f in result.failures} == {UNAVAILABLE}
        assert [f.index for f in result.failures] == list(range(100, 200))

        async with AsyncSession(single) as fresh:
            again = await BaseRepository(User, fresh).bulk_create(records, batch_size=100)
        assert again.success_count == 300
    finally:
        await single.dispose()


# -- AUTOCOMMIT engines (9.8) ------------------------------------------------------------------


class _PairBase(DeclarativeBase):
    pass


class Pair(_PairBase):
    __tablename__ = "accounting_pairs"
    __table_args__ = (UniqueConstraint("left", "right"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    left: Mapped[str] = mapped_column(String(50))
    right: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def autocommit_engine(db_url: str, tables: None) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    async with engine.begin() as conn:
        await conn.run_sync(_PairBase.metadata.drop_all)
        await conn.run_sync(_PairBase.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_PairBase.metadata.drop_all)
        await engine.dispose()


PAIRS = [{"left": f"l{i}", "right": f"r{i}"} for i in range(100)]


async def _pairs(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(Pair)) or 0


@pytest.mark.parametrize("in_callers_transaction", [False, True], ids=["own", "callers"])
async def test_an_autocommit_engine_is_refused_up_front(
    autocommit_engine: AsyncEngine, in_callers_transaction: bool
) -> None:
    async with AsyncSession(autocommit_engine) as session:
        repo = BaseRepository(Pair, session)
        if in_callers_transaction:
            await session.begin()
        with pytest.raises(ConfigurationError, match="AUTOCOMMIT") as caught:
            await repo.bulk_create(PAIRS, ignore_conflicts=True)
        if in_callers_transaction:
            await session.rollback()
        assert "execution_options" in str(caught.value)  # the remedy
        with pytest.raises(ConfigurationError, match="AUTOCOMMIT"):
            await repo.bulk_update({"left__startswith": "l"}, {"right": "x"})
        with pytest.raises(ConfigurationError, match="AUTOCOMMIT"):
            await repo.bulk_delete({"left__startswith": "l"})
    assert await _pairs(autocommit_engine) == 0


async def test_an_autocommit_connection_option_is_refused_and_the_remedy_works(
    autocommit_engine: AsyncEngine,
) -> None:
    transactional = autocommit_engine.execution_options(
        isolation_level="SERIALIZABLE"
        if autocommit_engine.dialect.name == "sqlite"
        else "READ COMMITTED"
    )
    async with AsyncSession(transactional) as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        with pytest.raises(ConfigurationError, match="AUTOCOMMIT"):
            await BaseRepository(Pair, session).bulk_create(PAIRS)
    async with AsyncSession(transactional) as session:
        repo = BaseRepository(Pair, session)
        result = await repo.bulk_create(PAIRS[:50])
        assert result.success_count == 50
        result = await repo.bulk_create(PAIRS, ignore_conflicts=True)
        assert (result.success_count, len(result.conflicts)) == (50, 50)
    assert await _pairs(autocommit_engine) == 100


# -- isolate_errors (9.11) ---------------------------------------------------------------------

# One batch: refused records among innocent ones, in the batch and against the table.
ISOLATED = [
    user(0),
    {"name": "dup of 0", "email": "user0@example.com"},  # repeats record 0 in the batch
    user(2),
    {"name": "clash", "email": TAKEN},  # a row already holds it
    user(4),
    user(5),
    {"name": "dup of 5", "email": "user5@example.com"},
    {"name": "no email"},
]
ISOLATED_EXPECTED = [CREATED, INTEGRITY, CREATED, INTEGRITY, CREATED, CREATED, INTEGRITY, CREATED]


@pytest.mark.parametrize("in_callers_transaction", [False, True], ids=["own", "callers"])
async def test_isolate_errors_writes_the_innocent_records_of_a_refused_batch(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    in_callers_transaction: bool,
) -> None:
    await seed_taken(session_factory)
    bus = RecordingEventBus()
    repo = BaseRepository(User, session, event_bus=bus)
    if in_callers_transaction:
        async with session.begin():
            result = await repo.bulk_create(ISOLATED, isolate_errors=True)
    else:
        result = await repo.bulk_create(ISOLATED, isolate_errors=True)

    await check_accounting(result, ISOLATED, ISOLATED_EXPECTED, session_factory, existing=1)
    for failure in result.failures:
        assert "unique" in failure.message.lower()
        assert failure.record == ISOLATED[failure.index]
    # One event for the batch, with exactly the rows written.
    assert bus.ids(EventType.CREATED) == result.created_ids
    assert len(bus.of(EventType.CREATED)) == 1


async def test_isolate_errors_is_off_by_default_and_the_batch_stays_atomic(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    result = await BaseRepository(User, session).bulk_create(ISOLATED)
    assert result.success_count == 0
    assert await count_users(session_factory) == 1


async def test_isolate_errors_with_many_refused_records_across_batches(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    records = [{"name": "clash", "email": TAKEN} if i % 37 == 5 else user(i) for i in range(1_000)]
    expected = [INTEGRITY if i % 37 == 5 else CREATED for i in range(1_000)]
    result = await BaseRepository(User, session).bulk_create(
        records, batch_size=300, isolate_errors=True
    )
    await check_accounting(result, records, expected, session_factory, existing=1)


async def test_isolate_errors_with_ignore_conflicts_skips_and_sets_aside(
    engine: AsyncEngine,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    # Validation lets through what only the server refuses: a NUL byte, which PostgreSQL
    # refuses in text and the others store.
    if engine.dialect.name != "postgresql":
        pytest.skip("needs a value only PostgreSQL refuses")
    await seed_taken(session_factory)
    records = [
        user(0),
        {"name": "nul\x00", "email": "nul@example.com"},
        user(2),
        {"name": "c", "email": TAKEN},
    ]
    result = await BaseRepository(User, session).bulk_create(
        records, ignore_conflicts=True, isolate_errors=True
    )
    expected = [CREATED, FailureKind.DATABASE, CREATED, CONFLICT]
    await check_accounting(result, records, expected, session_factory, existing=1)


async def _sequence_position(session: AsyncSession) -> int:
    value = await session.scalar(text("SELECT last_value FROM users_id_seq"))
    await session.commit()
    return int(value or 0)


@pytest.mark.parametrize("isolate", [False, True], ids=["culprit_search", "isolate_errors"])
async def test_a_refused_batch_reuses_the_keys_it_drew(
    engine: AsyncEngine,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    isolate: bool,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("about keys drawn from a PostgreSQL sequence")
    await seed_taken(session_factory)
    before = await _sequence_position(session)
    records = [{"name": "clash", "email": TAKEN} if i == 7_000 else user(i) for i in range(10_000)]
    result = await BaseRepository(User, session).bulk_create(records, isolate_errors=isolate)
    used = await _sequence_position(session) - before

    assert [f.index for f in result.failures if f.kind is INTEGRITY] == [7_000]
    assert result.success_count == (9_999 if isolate else 0)
    # Every attempt after the first takes the keys the rolled-back ones drew (the search
    # used to draw 140,005 for this batch).
    assert used <= 10_000
    if isolate:
        created = sorted(result.created_ids)
        assert created[0] == before + 1
        assert created[-1] <= before + 10_000


# -- MariaDB's per-row driver warnings (9.13) --------------------------------------------------


async def test_skipped_conflicts_are_summarised_once_per_batch_not_printed_per_row(
    engine: AsyncEngine,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i) for i in range(40)])
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        result = await repo.bulk_create(
            [user(i) for i in range(60)], batch_size=30, ignore_conflicts=True
        )
    assert (result.success_count, len(result.conflicts)) == (20, 40)

    driver_records = [r for r in caplog.records if r.name.startswith("asyncmy")]
    assert driver_records == []
    assert "Duplicate entry" not in capfd.readouterr().err
    # (DEBUG: one line per batch, on every database.)
    summaries = [
        r for r in caplog.records if r.name == "baserepo.bulk" and r.levelno > logging.DEBUG
    ]
    if engine.dialect.driver == "asyncmy":
        # Batch 0-29 skipped 30 rows, batch 30-59 skipped 10.
        assert len(summaries) == 2
        assert [r.levelno for r in summaries] == [logging.INFO, logging.INFO]
        assert "30 of 30" in summaries[0].getMessage()
        assert "10 of 30" in summaries[1].getMessage()
    else:
        assert summaries == []


async def test_a_prepared_statement_name_taken_on_the_connection_blames_no_record(
    engine: AsyncEngine, db_url: str
) -> None:
    """42P05 is what PgBouncer's transaction pooling gives a client whose driver names its
    statements like another client's: the server connection's state, not the data."""
    if engine.dialect.name != "postgresql":
        pytest.skip("named prepared statements (PREPARE) are PostgreSQL's")
    # A connection of its own, closed afterwards: a prepared statement outlives transactions.
    own_engine = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with own_engine.connect() as conn:
            await conn.execute(text("PREPARE baserepo_taken AS SELECT 1"))
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text("PREPARE baserepo_taken AS SELECT 1"))
    finally:
        await own_engine.dispose()
    assert getattr(raised.value.orig, "sqlstate", None) == "42P05"
    assert isinstance(translate(raised.value), DatabaseUnavailableError)
