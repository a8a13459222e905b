"""bulk_create with batches large enough for the fast paths (COPY on PostgreSQL).

The small-batch tests in test_bulk_create.py pin the semantics; these run the same guarantees
through batches of thousands of records (on PostgreSQL by COPY, with
keys drawn from the sequence beforehand). Every created id is checked against the unique email
of the input record at the same position.
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Identity, Integer, String, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository, FailureKind
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from tests.models import User

SIZE = 2_500
"""More than two COPY batches at batch_size=1_000, with a remainder batch."""


def users(count: int, tag: str = "u") -> list[dict[str, Any]]:
    return [
        {"name": f"{tag} {i}", "email": f"{tag}{i}@example.com", "salary": i % 90_000}
        for i in range(count)
    ]


async def emails_by_id(factory: async_sessionmaker[AsyncSession]) -> dict[int, str | None]:
    async with factory() as fresh:
        return {row.id: row.email for row in await fresh.execute(select(User.id, User.email))}


def assert_aligned(
    ids: list[Any], records: list[dict[str, Any]], stored: dict[int, str | None]
) -> None:
    assert len(ids) == len(set(ids)) == len(records)
    for new_id, record in zip(ids, records, strict=True):
        assert stored[new_id] == record["email"], f"id {new_id} is not {record['email']}'s row"


async def test_large_batches_return_each_records_own_id_in_input_order(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    records = users(SIZE)
    result = await BaseRepository(User, session).bulk_create(records, batch_size=1_000)

    assert (result.success_count, result.error_count) == (SIZE, 0)
    stored = await emails_by_id(session_factory)
    assert len(stored) == SIZE
    assert_aligned(result.created_ids, records, stored)
    assert result.created_ids == sorted(result.created_ids)  # keys drawn in input order
    async with session_factory() as fresh:
        defaults = await fresh.execute(select(User.is_active, User.created_at).limit(3))
        assert all(active is True and created is not None for active, created in defaults)


async def test_a_bad_record_in_a_large_batch_is_named_and_only_its_batch_is_lost(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    records = users(SIZE)
    records[1_700]["email"] = records[1_200]["email"]  # same batch (1_000-1_999): a duplicate
    result = await BaseRepository(User, session).bulk_create(records, batch_size=1_000)

    by_index = {f.index: f for f in result.failures}
    assert set(by_index) == set(range(1_000, 2_000))
    assert by_index[1_700].kind is FailureKind.INTEGRITY
    assert "unique" in by_index[1_700].message.lower()
    assert by_index[1_200].kind is FailureKind.BATCH_ROLLED_BACK
    assert "record 1700" in by_index[1_200].message
    written = [r for i, r in enumerate(records) if not 1_000 <= i < 2_000]
    stored = await emails_by_id(session_factory)
    assert len(stored) == len(written)
    assert_aligned(result.created_ids, written, stored)


async def test_ignore_conflicts_in_large_batches_skips_existing_and_repeated_rows(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    records = users(SIZE)
    async with session_factory() as setup, setup.begin():
        await BaseRepository(User, setup).bulk_create(records[::10])  # 10% exist already
    records[999]["email"] = records[998]["email"]  # repeated within one batch: first wins
    repo = BaseRepository(User, session)

    result = await repo.bulk_create(records, batch_size=1_000, ignore_conflicts=True)

    skipped = {i for i in range(SIZE) if i % 10 == 0} | {999}
    assert {f.index for f in result.failures} == skipped
    assert all(f.kind is FailureKind.CONFLICT for f in result.failures)
    assert result.success_count == SIZE - len(skipped)
    stored = await emails_by_id(session_factory)
    written = [r for i, r in enumerate(records) if i not in skipped]
    assert len(stored) == len(written) + len(records[::10])
    assert_aligned(result.created_ids, written, stored)
    names = {r.email: r.name for r in await session.execute(select(User.email, User.name))}
    assert names[records[998]["email"]] == records[998]["name"]


async def test_ignore_conflicts_twice_in_one_caller_transaction(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # The second call's batches must not see rows staged by the first one.
    repo = BaseRepository(User, session)
    async with session.begin():
        first = await repo.bulk_create(users(SIZE, "a"), batch_size=1_000, ignore_conflicts=True)
        second = await repo.bulk_create(users(SIZE, "b"), batch_size=1_000, ignore_conflicts=True)
    assert first.success_count == second.success_count == SIZE
    assert len(await emails_by_id(session_factory)) == 2 * SIZE


async def test_a_caller_rollback_undoes_every_large_batch(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    async with session.begin():
        result = await repo.bulk_create(users(SIZE), batch_size=1_000)
        assert result.success_count == SIZE
        await session.rollback()
    assert await emails_by_id(session_factory) == {}


async def test_large_batches_from_an_async_generator(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    records = users(SIZE)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        for record in records:
            yield record

    result = await BaseRepository(User, session).bulk_create(stream(), batch_size=1_000)
    assert_aligned(result.created_ids, records, await emails_by_id(session_factory))


# -- PostgreSQL: tables COPY cannot serve take the array path ---------------------------------


class OtherBase(DeclarativeBase):
    pass


class AlwaysIdentity(OtherBase):
    """GENERATED ALWAYS AS IDENTITY: COPY may not write the key."""

    __tablename__ = "always_identity"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)


class MixedCase(OtherBase):
    """A quoted, mixed-case table name in its own schema."""

    __tablename__ = "Mixed Case"
    __table_args__ = {"schema": "baserepo_other"}  # noqa: RUF012

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)


class RowSecurity(OtherBase):
    """Row-level security enabled: COPY FROM refuses such tables."""

    __tablename__ = "row_security"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)


@pytest.fixture
async def pg_tables(engine: AsyncEngine, tables: None) -> AsyncIterator[None]:
    if engine.dialect.name != "postgresql":
        pytest.skip("COPY and identity columns are PostgreSQL's")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE SCHEMA IF NOT EXISTS baserepo_other"))
        await conn.run_sync(OtherBase.metadata.drop_all)
        await conn.run_sync(OtherBase.metadata.create_all)
        await conn.execute(text("ALTER TABLE row_security ENABLE ROW LEVEL SECURITY"))
    yield
    async with engine.begin() as conn:
        await conn.run_sync(OtherBase.metadata.drop_all)


@pytest.mark.parametrize(
    ("model", "by_copy"), [(AlwaysIdentity, False), (MixedCase, True), (RowSecurity, False)]
)
async def test_postgresql_tables_of_every_shape_get_aligned_ids(
    engine: AsyncEngine, pg_tables: None, model: type[Any], by_copy: bool
) -> None:
    records = [{"code": f"c{i}"} for i in range(SIZE)]
    async with AsyncSession(engine, expire_on_commit=False) as session:
        bulk = bulk_dialect_for(engine.sync_engine.dialect)
        assert isinstance(bulk, AsyncpgPostgresqlDialect)
        target = await bulk.copy_target(session, model.__table__, "id")
        assert (target is not None) is by_copy
        await session.commit()
        result = await BaseRepository(model, session).bulk_create(records, batch_size=1_000)
        assert result.success_count == SIZE, result.errors[:3]
        stored = dict((await session.execute(select(model.id, model.code))).all())
    assert [stored[i] for i in result.created_ids] == [r["code"] for r in records]


async def test_postgresql_concurrent_large_calls_never_share_a_key(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("about keys drawn from a PostgreSQL sequence")
    import asyncio

    async def load(tag: str) -> list[Any]:
        async with session_factory() as session:
            repo = BaseRepository(User, session)
            return (await repo.bulk_create(users(SIZE, tag), batch_size=600)).created_ids

    first, second = await asyncio.gather(load("a"), load("b"))
    assert not set(first) & set(second)
    stored = await emails_by_id(session_factory)
    assert_aligned(first, users(SIZE, "a"), stored)
    assert_aligned(second, users(SIZE, "b"), stored)


async def test_postgresql_ignore_conflicts_honours_a_unique_index_the_model_does_not_know(
    engine: AsyncEngine, session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # The up-front look at the model's unique columns (email) lets a duplicate name through;
    # the database's own index on name refuses it, and the batch is moved the staged way.
    if engine.dialect.name != "postgresql":
        pytest.skip("about the COPY path's fallback")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE UNIQUE INDEX users_name_unique ON users (name)"))
    records = users(SIZE)
    records[1_500]["name"] = records[10]["name"]  # a clash the model cannot see
    records[1_600]["email"] = records[1_599]["email"]  # and one it can
    repo = BaseRepository(User, session)

    result = await repo.bulk_create(records, batch_size=1_000, ignore_conflicts=True)

    assert {f.index: f.kind for f in result.failures} == {
        1_500: FailureKind.CONFLICT,
        1_600: FailureKind.CONFLICT,
    }
    written = [r for i, r in enumerate(records) if i not in (1_500, 1_600)]
    stored = await emails_by_id(session_factory)
    assert len(stored) == len(written)
    assert_aligned(result.created_ids, written, stored)


async def test_postgresql_a_value_copy_refuses_is_that_records_database_error(
    engine: AsyncEngine, session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # PostgreSQL text cannot hold NUL; COPY's error must name the record like any other.
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite and MariaDB store NUL bytes")
    records = users(SIZE)
    records[1_234]["name"] = "nul\x00byte"
    result = await BaseRepository(User, session).bulk_create(records, batch_size=1_000)

    by_index = {f.index: f for f in result.failures}
    assert set(by_index) == set(range(1_000, 2_000))
    assert by_index[1_234].kind is FailureKind.DATABASE
    assert "0x00" in by_index[1_234].message
    assert by_index[1_000].kind is FailureKind.BATCH_ROLLED_BACK
    stored = await emails_by_id(session_factory)
    assert len(stored) == SIZE - 1_000
    # The session is still usable after the refused COPY.
    again = await BaseRepository(User, session).bulk_create(users(600, "again"))
    assert again.success_count == 600


async def test_the_callers_records_are_left_as_they_were(session: AsyncSession) -> None:
    # The quick path hands the caller's own dicts on (to events, to failures): never changed.
    records = users(SIZE)
    for record in records[:1_000]:  # the first batch: None keys, "let the database choose"
        record["id"] = None
    before = [dict(record) for record in records]
    result = await BaseRepository(User, session).bulk_create(records, batch_size=1_000)
    assert result.success_count == SIZE
    assert records == before


class ServerDefaults(OtherBase):
    """Columns the database fills: COPY must leave them out, not send NULL."""

    __tablename__ = "server_defaults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    level: Mapped[int] = mapped_column(Integer, server_default=text("7"))
    label: Mapped[str] = mapped_column(String(20), server_default=text("'fresh'"))


async def test_columns_left_to_server_defaults_get_them(engine: AsyncEngine, tables: None) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: ServerDefaults.__table__.drop(sync, checkfirst=True))
        await conn.run_sync(lambda sync: ServerDefaults.__table__.create(sync))
    try:
        records: list[dict[str, Any]] = [{"code": f"d{i}"} for i in range(SIZE)]
        records[3]["level"] = 1  # another key set: its own group
        async with AsyncSession(engine, expire_on_commit=False) as session:
            repo = BaseRepository(ServerDefaults, session)
            result = await repo.bulk_create(records, batch_size=1_000)
            assert result.success_count == SIZE
            stored = {
                row.id: (row.code, row.level, row.label)
                for row in await session.execute(
                    select(
                        ServerDefaults.id,
                        ServerDefaults.code,
                        ServerDefaults.level,
                        ServerDefaults.label,
                    )
                )
            }
        expected = [(r["code"], r.get("level", 7), "fresh") for r in records]
        assert [stored[i] for i in result.created_ids] == expected
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: ServerDefaults.__table__.drop(sync, checkfirst=True))
