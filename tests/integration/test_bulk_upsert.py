"""bulk_upsert on every database: each record is created, updated, unchanged or reported, once.

Rows are read back from a brand-new session and each id is checked against the unique email
(or composite key) of the input record at its position, so an id handed to the wrong record
fails the test even when the counts add up.
"""

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Integer, String, UniqueConstraint, event, make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.util import await_only

from baserepo import (
    BaseRepository,
    BulkOperationError,
    BulkOperationResult,
    ConfigurationError,
    EventType,
    FailureKind,
    create_engine,
)
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from baserepo.testing import RecordingEventBus
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.models import User

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@pytest.fixture(autouse=True)
def staged_from_one_row(engine: AsyncEngine) -> None:
    """On asyncpg, the small batches of these tests go through the staging table, as large
    ones do by default (``stage_min_rows``); a test that wants ON CONFLICT says so."""
    bulk = bulk_dialect_for(engine.sync_engine.dialect)
    if isinstance(bulk, AsyncpgPostgresqlDialect):  # the engine is this test's own
        bulk.stage_min_rows = 1


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"user {i}", "email": f"user{i}@example.com", **extra}


async def seed(factory: async_sessionmaker[AsyncSession], *users: dict[str, Any]) -> list[int]:
    async with factory() as setup, setup.begin():
        made = [User(**data) for data in users]
        setup.add_all(made)
    return [u.id for u in made]


async def rows_by_email(factory: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with factory() as fresh:
        return {u.email: u for u in (await fresh.scalars(select(User))).all()}


async def check_upsert(
    result: BulkOperationResult,
    records: Sequence[Mapping[str, Any]],
    expected: Sequence[str | FailureKind],
    factory: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    """Counts, one outcome per index, each id on the row of its own record, in input order."""
    assert result.total == len(records) == len(expected)
    assert len(result.failures) == result.error_count
    outcome = {f.index: f.kind for f in result.failures}
    assert outcome == {i: k for i, k in enumerate(expected) if isinstance(k, FailureKind)}
    for failure in result.failures:
        assert f"record {failure.index}" in failure.message
    rows = await rows_by_email(factory)
    for name, ids in (
        (CREATED, result.created_ids),
        (UPDATED, result.updated_ids),
        (UNCHANGED, result.unchanged_ids),
    ):
        indexes = [i for i, k in enumerate(expected) if k == name]
        assert [rows[records[i]["email"]].id for i in indexes] == ids, name
    assert result.success_count == (
        len(result.created_ids) + len(result.updated_ids) + len(result.unchanged_ids)
    )
    return rows


@pytest.mark.parametrize("statement", ["staged", "on_conflict"])
async def test_new_rows_are_created_changed_ones_updated_and_equal_ones_left_alone(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    statement: str,
) -> None:
    bulk = bulk_dialect_for(engine.sync_engine.dialect)
    if statement == "on_conflict":
        if not isinstance(bulk, AsyncpgPostgresqlDialect):
            pytest.skip("only asyncpg has a staged statement besides ON CONFLICT")
        bulk.stage_min_rows = 1_000  # batches this small: the ON CONFLICT statement
    await seed(session_factory, user(1, salary=10), user(2, salary=20), user(3, salary=30))
    bus = RecordingEventBus()
    repo = BaseRepository(User, session, event_bus=bus)
    records = [
        user(4, salary=40),
        user(2, salary=21),  # changed
        user(3, salary=30),  # as stored
        user(5, salary=50),
        user(1, salary=11, name="renamed"),
    ]

    result = await repo.bulk_upsert(records, unique_fields="email")

    rows = await check_upsert(
        result, records, [CREATED, UPDATED, UNCHANGED, CREATED, UPDATED], session_factory
    )
    assert result.error_count == 0
    assert [rows[f"user{i}@example.com"].salary for i in (1, 2, 3, 4, 5)] == [11, 21, 30, 40, 50]
    assert rows["user1@example.com"].name == "renamed"
    # The onupdate stamp is set on written rows only: an unchanged row was not written.
    assert rows["user2@example.com"].updated_at is not None
    assert rows["user3@example.com"].updated_at is None
    assert rows["user4@example.com"].updated_at is None
    assert bus.ids(EventType.CREATED) == result.created_ids
    assert bus.ids(EventType.UPDATED) == result.updated_ids
    assert [e.data[0]["salary"] for e in bus.of(EventType.UPDATED)] == [21]

    again = await repo.bulk_upsert(records, unique_fields="email")
    assert again.unchanged_ids == [rows[r["email"]].id for r in records]
    assert again.created_ids == again.updated_ids == []


async def test_empty_input_writes_nothing(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    result = await BaseRepository(User, session).bulk_upsert([], unique_fields="email")
    assert result == BulkOperationResult()
    assert await rows_by_email(session_factory) == {}


async def test_an_input_that_raises_midway_stops_the_call_with_every_record_accounted_for(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """The committed batches stand (one created, one updated, one unchanged), the error names
    the input, and nothing taken from it is lost from the result."""
    await seed(session_factory, user(1, salary=10), user(2, salary=20))
    records = [user(1, salary=11), user(2, salary=20), user(3)]

    async def stream() -> AsyncIterator[dict[str, Any]]:
        for record in records:
            yield record
        raise RuntimeError("the feed broke")

    with pytest.raises(BulkOperationError, match="the input raised") as raised:
        await BaseRepository(User, session).bulk_upsert(
            stream(), unique_fields="email", batch_size=3
        )
    result = raised.value.result
    await check_upsert(result, records, [UPDATED, UNCHANGED, CREATED], session_factory)
    assert isinstance(raised.value.__cause__, RuntimeError)


async def test_the_last_of_duplicate_keys_wins_and_the_earlier_ones_are_reported(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(session_factory, user(1, salary=1))
    records = [
        user(1, salary=2),
        user(7, salary=1),
        user(1, salary=3),
        user(7, salary=2),
        user(7, salary=3),
        {"name": "no email"},  # NULL never conflicts: not an upsert
        user(8, salary="lots"),  # validation, as bulk_create
    ]
    result = await BaseRepository(User, session).bulk_upsert(
        records, unique_fields=["email"], batch_size=100
    )
    dup, val = FailureKind.DUPLICATE, FailureKind.VALIDATION
    rows = await check_upsert(
        result,
        records,
        [dup, dup, UPDATED, dup, CREATED, val, val],
        session_factory,
    )
    assert rows["user1@example.com"].salary == 3
    assert rows["user7@example.com"].salary == 3
    messages = {f.index: f.message for f in result.failures}
    assert "record 2" in messages[0]
    assert "last one wins" in messages[0]
    assert {f.index: f.field for f in result.failures if f.kind is val} == {5: "email", 6: "salary"}


async def test_update_fields_limit_what_an_existing_row_gets(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(session_factory, user(1, salary=1, department="a"))
    records = [user(1, salary=2, department="b", name="ignored"), user(2, salary=5, department="c")]
    result = await BaseRepository(User, session).bulk_upsert(
        records, unique_fields="email", update_fields=["salary"]
    )
    rows = await check_upsert(result, records, [UPDATED, CREATED], session_factory)
    first = rows["user1@example.com"]
    assert (first.salary, first.department, first.name) == (2, "a", "user 1")
    assert rows["user2@example.com"].department == "c"  # a new row gets every given field
    # Only the update fields are compared: a record differing elsewhere is unchanged.
    same = await BaseRepository(User, session).bulk_upsert(
        [user(1, salary=2, department="z")], unique_fields="email", update_fields="salary"
    )
    assert same.unchanged_ids == [first.id]


async def test_a_soft_deleted_row_is_updated_and_stays_deleted(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    deleted_at = datetime(2024, 1, 1)
    (gone,) = await seed(session_factory, user(1, salary=1, deleted_at=deleted_at))
    repo = BaseRepository(User, session)
    result = await repo.bulk_upsert([user(1, salary=2)], unique_fields="email")
    assert result.updated_ids == [gone]
    rows = await rows_by_email(session_factory)
    assert (rows["user1@example.com"].salary, rows["user1@example.com"].deleted_at) == (
        2,
        deleted_at,
    )
    assert await repo.get(gone) is None  # still hidden from reads


async def test_keys_that_are_not_a_unique_constraint_are_refused_before_any_write(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(User, session)
    with pytest.raises(ConfigurationError, match="not the fields of a unique constraint"):
        await repo.bulk_upsert([user(1)], unique_fields="name")
    with pytest.raises(ValueError, match="no such column nickname"):
        await repo.bulk_upsert([user(1)], unique_fields="email", update_fields=["nickname"])
    with pytest.raises(ValueError, match="may not name unique_fields"):
        await repo.bulk_upsert([user(1)], unique_fields="email", update_fields=["email"])
    with pytest.raises(ValueError, match="unique_fields is empty"):
        await repo.bulk_upsert([user(1)], unique_fields=[])
    assert await rows_by_email(session_factory) == {}


async def test_upsert_on_the_primary_key_names_the_record_the_database_refuses(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    first, second = await seed(session_factory, user(1), user(2))
    records = [
        {"id": first, "name": "one", "email": "user1@example.com"},
        {"id": second, "name": "two", "email": "user1@example.com"},  # email of the other row
        {"id": first + second + 10, "name": "new", "email": "new@example.com"},
        {"id": first + second + 11, "name": "newer", "email": "newer@example.com"},
    ]
    result = await BaseRepository(User, session).bulk_upsert(
        records, unique_fields="id", batch_size=2
    )
    kinds = {f.index: f.kind for f in result.failures}
    assert kinds == {0: FailureKind.BATCH_ROLLED_BACK, 1: FailureKind.INTEGRITY}
    assert result.created_ids == [first + second + 10, first + second + 11]
    rows = await rows_by_email(session_factory)
    assert rows["user1@example.com"].name == "user 1"  # the refused batch left nothing
    assert rows["user2@example.com"].name == "user 2"
    assert rows["newer@example.com"].id == first + second + 11


async def test_inside_the_callers_transaction_nothing_stays_after_a_rollback(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(session_factory, user(1, salary=1))
    repo = BaseRepository(User, session)
    async with session.begin():
        result = await repo.bulk_upsert([user(1, salary=2), user(2)], unique_fields="email")
        assert len(result.updated_ids) == len(result.created_ids) == 1
        await session.rollback()
    rows = await rows_by_email(session_factory)
    assert list(rows) == ["user1@example.com"]
    assert rows["user1@example.com"].salary == 1


async def test_a_key_repeated_in_later_batches_of_one_transaction_ends_with_the_last_value(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """Each batch is written from its own records only: on PostgreSQL the batches of one
    transaction share a staging table, which every batch empties first."""
    records = [user(1, salary=1), user(2), user(1, salary=2), user(3), user(1, salary=3)]
    async with session.begin():
        result = await BaseRepository(User, session).bulk_upsert(
            records, unique_fields="email", batch_size=1
        )
    assert (result.success_count, result.error_count) == (5, 0)
    rows = await rows_by_email(session_factory)
    assert rows["user1@example.com"].salary == 3
    first = rows["user1@example.com"].id
    assert result.created_ids == [first, rows["user2@example.com"].id, rows["user3@example.com"].id]
    assert result.updated_ids == [first, first]


async def test_an_unchanged_row_deleted_by_another_transaction_meanwhile_is_written_again(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    """PostgreSQL through asyncpg: the staged statement leaves an unchanged row unlocked until
    it is read back by key; a row deleted in between is upserted again, by ON CONFLICT."""
    if engine.dialect.driver != "asyncpg":
        pytest.skip("about the asyncpg dialect's staging table")
    _, kept_id = await seed(session_factory, user(1, salary=1), user(2, salary=2))
    deleted: list[str] = []

    def delete_first(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # The read back of the unchanged rows: another transaction deletes one of them first.
        if "FOR UPDATE" in statement and not deleted:
            deleted.append(statement)

            async def delete() -> None:
                async with engine.begin() as other:
                    await other.execute(
                        User.__table__.delete().where(User.email == user(1)["email"])
                    )

            await_only(delete())

    records = [user(1, salary=1), user(2, salary=2), user(3, salary=3)]
    event.listen(engine.sync_engine, "before_cursor_execute", delete_first)
    try:
        async with session_factory() as session:
            result = await BaseRepository(User, session).bulk_upsert(records, unique_fields="email")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", delete_first)
    assert deleted, "the unchanged rows were not read back"
    rows = await check_upsert(result, records, [CREATED, UNCHANGED, CREATED], session_factory)
    assert rows["user2@example.com"].id == kept_id
    assert rows["user1@example.com"].salary == 1


# -- a composite unique constraint ------------------------------------------------------------


class OwnBase(DeclarativeBase):
    pass


class Stock(OwnBase):
    """Matched on (warehouse, sku), a unique constraint of two columns."""

    __tablename__ = "upsert_stock"
    __table_args__ = (UniqueConstraint("warehouse", "sku"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    warehouse: Mapped[str] = mapped_column(String(20), nullable=False)
    sku: Mapped[str] = mapped_column(String(20), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)


class Tagged(OwnBase):
    """A JSON column: PostgreSQL's array statement cannot carry it (SQLAlchemy's executemany)."""

    __tablename__ = "upsert_tagged"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    tags: Mapped[Any] = mapped_column(JSON)


@pytest.fixture
async def stock_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(OwnBase.metadata.drop_all)
        await conn.run_sync(OwnBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(OwnBase.metadata.drop_all)


async def test_rows_are_matched_on_a_composite_unique_constraint(
    engine: AsyncEngine, stock_tables: None
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as setup, setup.begin():
        setup.add_all(
            [Stock(warehouse="a", sku="x", quantity=1), Stock(warehouse="a", sku="y", quantity=2)]
        )
    records = [
        {"warehouse": "b", "sku": "x", "quantity": 5},  # same sku, other warehouse: new
        {"warehouse": "a", "sku": "y", "quantity": 2},  # as stored
        {"warehouse": "a", "sku": "x", "quantity": 9},
        {"warehouse": "b", "sku": "y", "quantity": 7},
    ]
    async with factory() as session:
        repo = BaseRepository(Stock, session)
        with pytest.raises(ConfigurationError):
            await repo.bulk_upsert(records, unique_fields="sku")
        result = await repo.bulk_upsert(records, unique_fields=("sku", "warehouse"))
    async with factory() as fresh:
        rows = {(s.warehouse, s.sku): s for s in (await fresh.scalars(select(Stock))).all()}
    ids = {key: rows[(r["warehouse"], r["sku"])].id for key, r in enumerate(records)}
    assert result.created_ids == [ids[0], ids[3]]
    assert result.updated_ids == [ids[2]]
    assert result.unchanged_ids == [ids[1]]
    assert {k: s.quantity for k, s in rows.items()} == {
        ("a", "x"): 9,
        ("a", "y"): 2,
        ("b", "x"): 5,
        ("b", "y"): 7,
    }


async def test_a_table_the_fast_statement_cannot_carry_is_upserted_all_the_same(
    engine: AsyncEngine, stock_tables: None
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session:
        repo = BaseRepository(Tagged, session)
        first = await repo.bulk_upsert(
            [{"code": "a", "tags": ["x"]}, {"code": "b", "tags": ["y"]}], unique_fields="code"
        )
        second = await repo.bulk_upsert(
            [{"code": "c", "tags": []}, {"code": "b", "tags": ["y"]}, {"code": "a", "tags": ["z"]}],
            unique_fields="code",
        )
    async with factory() as fresh:
        rows = {t.code: t for t in (await fresh.scalars(select(Tagged))).all()}
    assert first.created_ids == [rows["a"].id, rows["b"].id]
    assert second.created_ids == [rows["c"].id]
    assert second.unchanged_ids == [rows["b"].id]
    assert second.updated_ids == [rows["a"].id]
    assert rows["a"].tags == ["z"]


# -- the cache ---------------------------------------------------------------------------------


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def test_cached_reads_see_the_upsert_after_its_commit(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], stack: CacheStack
) -> None:
    (first,) = await seed(session_factory, user(1, salary=1))
    config = stack.config()
    repo = BaseRepository(User, session, config)
    assert [u.salary for u in await repo.list(order_by="id")] == [1]
    assert await repo.count() == 1
    held = await repo.get(first)
    assert held is not None

    result = await repo.bulk_upsert([user(1, salary=2), user(2, salary=3)], unique_fields="email")

    assert result.updated_ids == [first]
    assert held.salary == 2  # the session's own object carries the written value
    async with session_factory() as other:
        reader = BaseRepository(User, other, config)
        assert [u.salary for u in await reader.list(order_by="id")] == [2, 3]
        assert await reader.count() == 2


# -- concurrent writers ------------------------------------------------------------------------


async def test_two_concurrent_upserts_of_the_same_new_keys_create_each_row_once(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await seed(session_factory, user(0, salary=0))
    emails = [f"user{i}@example.com" for i in range(20)]

    async def run(salary: int) -> BulkOperationResult:
        async with session_factory() as own:
            records = [user(i, salary=salary) for i in range(20)]
            return await BaseRepository(User, own).bulk_upsert(records, unique_fields="email")

    first, second = await asyncio.gather(run(1), run(2))

    rows = await rows_by_email(session_factory)
    assert sorted(rows) == sorted(emails)
    for result in (first, second):
        assert (result.success_count, result.error_count) == (20, 0)
    # Each new key was created by exactly one of the calls; the other found it and updated it.
    created = first.created_ids + second.created_ids
    assert sorted(created) == sorted(rows[e].id for e in emails[1:])
    winner = 1 if rows["user5@example.com"].salary == 1 else 2
    assert {rows[e].salary for e in emails} == {winner}


# -- PostgreSQL's generic dialect (psycopg): the same statement without asyncpg ------------------


async def test_psycopg_upserts_through_the_generic_dialect(db_url: str, tables: None) -> None:
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("psycopg is a PostgreSQL driver")
    pytest.importorskip("psycopg")
    engine = create_engine(
        url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    )
    try:
        factory = async_sessionmaker(engine, expire_on_commit=False)
        await seed(factory, user(1, salary=1), user(2, salary=2))
        records = [user(3, salary=3), user(2, salary=2), user(1, salary=9)]
        async with factory() as session:
            result = await BaseRepository(User, session).bulk_upsert(records, unique_fields="email")
        await check_upsert(result, records, [CREATED, UNCHANGED, UPDATED], factory)
    finally:
        await engine.dispose()
