"""The bulk paths on ``postgresql+psycopg`` (async): the generic PostgreSQL bulk dialect.

COPY needs asyncpg's ``copy_records_to_table``; any other PostgreSQL driver gets the generic
dialect (arrays through ``unnest``, SQLAlchemy's executemany for the rest, changes by key
range). These tests run its paths against the same database the asyncpg tests use, through a
psycopg engine built from the asyncpg URL. Only the PostgreSQL backend has them.
"""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, FailureKind, create_engine
from baserepo._bulk import BulkDialect, bulk_dialect_for
from baserepo._bulk.postgresql import PostgresqlDialect
from tests.integration.test_bulk_create import MIXED, check_accounting, seed_taken, user
from tests.models import User

pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
async def psycopg_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("psycopg is a PostgreSQL driver")
    engine = create_engine(
        url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    )
    try:
        async with engine.connect() as conn:  # initialises the dialect's capability flags
            await conn.execute(text("SELECT 1"))
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def factory(psycopg_engine: AsyncEngine, tables: None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(psycopg_engine, expire_on_commit=False)


@pytest.fixture
async def session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        yield session


def bulk_dialect(engine: AsyncEngine) -> BulkDialect:
    return bulk_dialect_for(engine.sync_engine.dialect)


def test_psycopg_gets_the_generic_dialect_once_per_engine(psycopg_engine: AsyncEngine) -> None:
    chosen = bulk_dialect(psycopg_engine)
    assert type(chosen) is PostgresqlDialect  # not the asyncpg one: psycopg has no COPY API
    assert bulk_dialect(psycopg_engine) is chosen
    assert chosen.max_parameters == psycopg_engine.dialect.insertmanyvalues_max_parameters


async def test_create_returns_each_records_own_id_in_input_order(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    records = [user(i, salary=i) for i in range(2_500)]
    result = await BaseRepository(User, session).bulk_create(records, batch_size=1_000)
    await check_accounting(result, records, [None] * len(records), factory)
    assert result.created_ids == sorted(result.created_ids)


async def test_create_with_keys_given_returns_them(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    records = [user(i, id=1_000 + i) for i in range(50)]
    result = await BaseRepository(User, session).bulk_create(records)
    assert result.created_ids == [1_000 + i for i in range(50)]
    await check_accounting(result, records, [None] * len(records), factory)


async def test_ignore_conflicts_skips_and_reports_each_clash(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(factory)
    records = [record for record, _, _ in MIXED]
    result = await BaseRepository(User, session).bulk_create(
        records, batch_size=4, ignore_conflicts=True
    )
    await check_accounting(
        result, records, [ignoring for _, _, ignoring in MIXED], factory, existing=1
    )


async def test_a_refused_batch_names_its_culprit(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(factory)
    records = [record for record, _, _ in MIXED]
    result = await BaseRepository(User, session).bulk_create(records, batch_size=4)
    await check_accounting(result, records, [plain for _, plain, _ in MIXED], factory, existing=1)
    by_index = {f.index: f for f in result.failures}
    assert by_index[3].kind is FailureKind.INTEGRITY
    assert "record 3 failed" in by_index[0].message


async def test_isolate_errors_sets_the_culprits_aside(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(factory)
    records = [user(0), {"name": "clash", "email": "taken@example.com"}, user(2)]
    result = await BaseRepository(User, session).bulk_create(records, isolate_errors=True)
    assert (result.success_count, [f.index for f in result.failures]) == (2, [1])
    await check_accounting(
        result, records, [None, FailureKind.INTEGRITY, None], factory, existing=1
    )


@pytest.mark.parametrize("batch_size", [10_000, 7])
async def test_update_and_delete_reach_every_matching_row(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession], batch_size: int
) -> None:
    repo = BaseRepository(User, session)
    created = await repo.bulk_create([user(i, salary=i % 3) for i in range(60)])
    ids = created.created_ids
    matching = [new_id for i, new_id in enumerate(ids) if i % 3 == 0]

    updated = await repo.bulk_update({"salary": 0}, {"department": "zero"}, batch_size=batch_size)
    assert sorted(updated.affected_ids) == matching
    deleted = await repo.bulk_delete({"department": "zero"}, batch_size=batch_size)
    assert sorted(deleted.affected_ids) == matching

    async with factory() as fresh:
        rows = dict((await fresh.execute(select(User.id, User.deleted_at))).all())
    assert sorted(rows) == ids  # soft delete where the model has it: no row is gone
    assert sorted(key for key, stamp in rows.items() if stamp is not None) == matching
    hard = await repo.bulk_delete({"salary": 0}, soft_delete=False, include_deleted=True)
    assert sorted(hard.affected_ids) == matching


async def test_the_asyncpg_engine_keeps_its_own_dialect(
    engine: AsyncEngine, psycopg_engine: AsyncEngine
) -> None:
    assert type(bulk_dialect(engine)) is not type(bulk_dialect(psycopg_engine))
