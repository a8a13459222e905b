"""Who owns the transaction, on every database.

A caller's ``async with session.begin():`` block owns it: the repository never commits, each
batch is a SAVEPOINT, and the caller's commit or rollback decides everything. Otherwise the
repository commits each batch. What "committed" means is always checked from a brand-new
session, which sees only what another connection has committed.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, make_url, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from baserepo import BaseRepository, ConfigurationError, FailureKind
from tests.models import Base, User


class Rollback(Exception):
    """Raised in a test to make the caller's block roll back."""


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"user {i}", "email": f"user{i}@example.com", **extra}


async def committed_emails(factory: async_sessionmaker[AsyncSession]) -> set[str | None]:
    """Emails of the rows another connection can see, i.e. the committed ones."""
    async with factory() as fresh:
        return set((await fresh.scalars(select(User.email))).all())


async def committed_count(factory: async_sessionmaker[AsyncSession]) -> int:
    async with factory() as fresh:
        return int(await fresh.scalar(select(func.count()).select_from(User)) or 0)


def emails(*indexes: int) -> set[str | None]:
    return {user(i)["email"] for i in indexes}


@contextmanager
def statements_on(sync_engine: Any) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.strip())

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)


def starting_with(statements: list[str], keyword: str) -> int:
    return sum(1 for s in statements if re.match(rf"{keyword}\b", s, re.IGNORECASE))


async def write_then_roll_back(
    session: AsyncSession, repo: BaseRepository[User, Any, Any], records: list[dict[str, Any]]
) -> None:
    """bulk_create in the caller's transaction, one record per batch, then roll it back."""
    async with session.begin():
        await repo.bulk_create(records, batch_size=1)
        raise Rollback


# -- caller-owned ------------------------------------------------------------------------------


async def test_caller_owned_transaction_is_committed_only_by_the_caller(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], count_queries: Any
) -> None:
    repo = BaseRepository(User, session)

    async with session.begin():
        with count_queries() as log:
            result = await repo.bulk_create([user(i) for i in range(6)], batch_size=2)
        assert result.success_count == 6
        updated = await repo.bulk_update({"email__in": sorted(emails(0, 1))}, {"status": "x"})
        deleted = await repo.bulk_delete({"email": user(5)["email"]}, soft_delete=False)
        assert (updated.success_count, deleted.success_count) == (2, 1)
        # Visible to the caller, invisible to everyone else: nothing was committed yet.
        assert await repo.count() == 5
        assert await committed_count(session_factory) == 0
        assert session.in_transaction()

    assert await committed_emails(session_factory) == emails(0, 1, 2, 3, 4)
    # One SAVEPOINT per batch, each released.
    assert starting_with(log.statements, "SAVEPOINT") == 3
    assert starting_with(log.statements, "RELEASE") == 3


async def test_failing_batch_in_callers_transaction_loses_only_itself(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    records = [user(i) for i in range(6)]
    records[3] = user(3, email=user(2)["email"])  # sinks batch [2, 3]

    async with session.begin():
        result = await repo.bulk_create(records, batch_size=2)
        kinds = {f.index: f.kind for f in result.failures}
        assert kinds == {2: FailureKind.BATCH_ROLLED_BACK, 3: FailureKind.INTEGRITY}
        assert result.success_count == 4
        # The caller's transaction is still usable (PostgreSQL refuses every statement in
        # an aborted one) and still holds the other batches.
        assert await repo.count() == 4
        await repo.create(user(9))
        failing_update = await repo.bulk_update(
            {"email__in": sorted(emails(0, 1, 4))}, {"email": "same@example.com"}, batch_size=1
        )
        assert (failing_update.success_count, failing_update.error_count) == (1, 2)
        assert await committed_count(session_factory) == 0

    assert await committed_emails(session_factory) == {
        "same@example.com",
        *emails(1, 4, 5, 9),
    }


@pytest.mark.parametrize("second_batch_fails", [True, False], ids=["failure", "success"])
async def test_guide_transaction_rollback(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
    second_batch_fails: bool,
) -> None:
    repo = BaseRepository(User, session)
    db_session = session
    batch1 = [user(i) for i in range(5)]
    batch2 = [user(i) for i in range(5, 10)]
    if second_batch_fails:
        batch2[2] = user(7, email=user(0)["email"])  # collides with batch1's first row

    # Bulk operations are transactional within batches
    try:
        async with db_session.begin():
            result1 = await repo.bulk_create(batch1)
            result2 = await repo.bulk_create(batch2)

            if result1.error_count > 0 or result2.error_count > 0:
                raise Exception("Batch processing failed")

    except Exception:
        # Both batches will be rolled back
        print("All operations rolled back")

    rolled_back = "All operations rolled back" in capsys.readouterr().out
    assert rolled_back is second_batch_fails
    assert result1.success_count == 5
    if second_batch_fails:
        assert result2.error_count == 5  # one culprit, four rolled back with it
        assert await committed_count(session_factory) == 0
        assert await repo.count() == 0
    else:
        assert await committed_emails(session_factory) == emails(*range(10))


async def test_exception_in_callers_block_undoes_every_kind_of_write(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i, department="a") for i in range(4)])
    before = await committed_emails(session_factory)

    async def rolled_back() -> None:
        async with session.begin():
            await repo.bulk_create([user(i) for i in range(10, 13)], batch_size=1)
            await repo.bulk_update({"department": "a"}, {"department": "b"}, batch_size=1)
            await repo.bulk_delete({"email": user(0)["email"]}, batch_size=1)
            await repo.bulk_delete({"email": user(1)["email"]}, soft_delete=False)
            await repo.create(user(20))
            raise Rollback

    with pytest.raises(Rollback):
        await rolled_back()

    assert await committed_emails(session_factory) == before
    async with session_factory() as fresh:
        rows = (await fresh.scalars(select(User))).all()
    assert {(u.department, u.deleted_at) for u in rows} == {("a", None)}


# -- repo-owned --------------------------------------------------------------------------------


async def test_repo_owned_mode_commits_each_batch(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    visible_at_report: list[tuple[int, int]] = []

    async def progress(done: int) -> None:
        visible_at_report.append((done, await committed_count(session_factory)))

    result = await repo.bulk_create([user(i) for i in range(7)], batch_size=3, progress=progress)

    assert result.success_count == 7
    # Each batch was committed before the next one started.
    assert visible_at_report == [(3, 3), (6, 6), (7, 7)]
    assert await committed_emails(session_factory) == emails(*range(7))
    assert not session.in_transaction(), "the repository left a transaction open"

    updated = await repo.bulk_update({"email__in": sorted(emails(0, 1))}, {"status": "s"})
    assert updated.success_count == 2
    async with session_factory() as fresh:
        assert await fresh.scalar(select(func.count()).where(User.status == "s")) == 2


async def test_implicitly_begun_transaction_is_treated_as_repo_owned(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    assert await repo.list() == []
    assert session.in_transaction()  # autobegun by the read above

    result = await repo.bulk_create([user(i) for i in range(4)], batch_size=3)
    assert result.success_count == 4
    assert await committed_emails(session_factory) == emails(0, 1, 2, 3)

    await repo.count()  # autobegins again
    await repo.bulk_delete({"email": user(0)["email"]}, soft_delete=False)
    assert await committed_emails(session_factory) == emails(1, 2, 3)


# -- engines without working SAVEPOINTs ------------------------------------------------------


async def test_engine_without_savepoint_recipe_refuses_or_works(db_url: str, tables: None) -> None:
    """A plain ``create_async_engine``: SQLite's driver breaks SAVEPOINT, so refuse clearly;
    the other drivers' SAVEPOINTs work out of the box."""
    plain = create_async_engine(db_url)
    factory = async_sessionmaker(plain, expire_on_commit=False)
    try:
        async with factory() as session:
            repo = BaseRepository(User, session)
            # Owning the transaction needs no SAVEPOINT: works everywhere.
            records = [user(0), user(1), user(2, email=user(0)["email"]), user(3)]
            result = await repo.bulk_create(records, batch_size=2)
            assert result.created_ids
            assert result.success_count == 2

            if make_url(db_url).get_backend_name() == "sqlite":
                with pytest.raises(ConfigurationError, match="SAVEPOINT"):
                    async with session.begin():
                        await repo.bulk_create([user(5)])
            else:
                with pytest.raises(Rollback):
                    await write_then_roll_back(session, repo, [user(5), user(6)])
        assert await committed_emails(factory) == emails(0, 1)
    finally:
        await plain.dispose()


async def test_users_own_sqlite_recipe_engine_works_without_a_second_begin(
    tmp_path: Path,
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'own.db'}")

    # SQLAlchemy's documented recipe, as a user would apply it to their own engine.
    @event.listens_for(engine.sync_engine, "connect")
    def do_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def do_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        records = [user(i) for i in range(6)]
        records[3] = user(3, email=user(2)["email"])
        async with factory() as session:
            repo = BaseRepository(User, session)
            with statements_on(engine.sync_engine) as seen:
                async with session.begin():
                    result = await repo.bulk_create(records, batch_size=2)
            assert result.success_count == 4
            assert starting_with(seen, "BEGIN") == 1, seen
            assert starting_with(seen, "SAVEPOINT") >= 3

            with pytest.raises(Rollback):
                await write_then_roll_back(session, repo, [user(10), user(11)])
        # The failed batch alone is missing, and the rolled-back block left nothing behind:
        # with the driver's default a released SAVEPOINT would have committed on its own.
        assert await committed_emails(factory) == emails(0, 1, 4, 5)
    finally:
        await engine.dispose()
