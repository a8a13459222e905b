"""SQLite's bulk_create path (``baserepo._bulk.sqlite``): multi-row VALUES statements, values
bound column by column, autoincrement keys counted from the batch's first row.

These run on a SQLite file of their own (SQLite is always there), with models of their own:
a key that is the rowid, a trigger that writes into its own table, JSON, a TypeDecorator with
a Python bind processor, one with a SQL ``bind_expression`` (which needs SQLAlchemy's
executemany), a Python-side uuid key. Every created id is checked against the unique column of
the input record at the same position, read back from a fresh session.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    DDL,
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Integer,
    String,
    Text,
    TypeDecorator,
    Uuid,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from baserepo import BaseRepository, FailureKind, create_engine
from baserepo._bulk import bulk_dialect_for


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime(2024, 5, 6, 7, 8, 9, 123456)


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))
    group: Mapped[str | None] = mapped_column("group", String(20))  # a keyword: quoted
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    score: Mapped[int] = mapped_column(Integer, CheckConstraint("score >= 0"), default=0)
    seen_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class Event(Base):
    """Each 'main' row makes its trigger insert a 'shadow' row into the same table."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="main")


event.listen(
    Event.__table__,
    "after_create",
    DDL(
        # ON EVENTS: sqlite_master keeps this spelling, SQLite's names ignore case.
        "CREATE TRIGGER events_shadow AFTER INSERT ON EVENTS WHEN new.kind = 'main' "
        "BEGIN INSERT INTO events (email, kind) VALUES (new.email || '.shadow', 'shadow'); END"
    ),
)


class Csv(TypeDecorator[list[str]]):
    """A list stored as text: a Python bind processor, no SQL around the parameter."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else ",".join(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> list[str] | None:
        return None if value is None else value.split(",")


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(50), unique=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tags: Mapped[list[str] | None] = mapped_column(Csv)


class Lowered(TypeDecorator[str]):
    """SQL around the parameter (``lower(?)``): only SQLAlchemy's compiler renders it."""

    impl = String(100)
    cache_ok = True

    def bind_expression(self, bindvalue: BindParameter[str]) -> ColumnElement[str]:
        return func.lower(bindvalue)


class Handle(Base):
    __tablename__ = "handles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(Lowered, unique=True)


def person(i: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"p{i}@example.com", "name": f"person {i}", **extra}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
async def session(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        yield session


@pytest.fixture
def few_rows_per_statement(monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine) -> None:
    """A parameter limit of 60 (10 rows of 6 columns): batches take several statements."""
    monkeypatch.setattr(bulk_dialect_for(engine.sync_engine.dialect), "max_parameters", 60)


@contextmanager
def inserts(engine: AsyncEngine) -> Iterator[list[str]]:
    """The INSERT statements sent inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT"):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def stored(factory: async_sessionmaker[AsyncSession], model: Any, key: str) -> dict[Any, Any]:
    """id -> unique column, from a session that shares nothing with the one under test."""
    async with factory() as fresh:
        rows = await fresh.execute(select(model.id, getattr(model, key)))
        return {row[0]: row[1] for row in rows}


def assert_aligned(ids: list[Any], wanted: list[str], by_id: dict[Any, Any]) -> None:
    assert len(ids) == len(set(ids)) == len(wanted)
    for new_id, value in zip(ids, wanted, strict=True):
        assert by_id[new_id] == value, f"id {new_id} is not the row of {value}"


async def test_counted_keys_belong_to_their_own_rows_across_statements_and_batches(
    engine: AsyncEngine,
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    few_rows_per_statement: None,
) -> None:
    # Keys that do not start at 1 and a hole: new rows get max(rowid) + 1 onwards.
    async with factory() as setup, setup.begin():
        setup.add_all([Person(id=40, email="old40@x"), Person(id=77, email="old77@x")])
    records = [person(i, group="g", score=i) for i in range(57)]

    with inserts(engine) as sent:
        result = await BaseRepository(Person, session).bulk_create(records, batch_size=25)

    assert (result.success_count, result.error_count) == (57, 0)
    assert result.created_ids == list(range(78, 78 + 57))
    assert_aligned(
        result.created_ids, [r["email"] for r in records], await stored(factory, Person, "email")
    )
    # 6 columns (4 given, 2 Python-side defaults). Per batch: the first row with RETURNING,
    # then statements of at most 10 rows without.
    returning = [s for s in sent if "RETURNING" in s]
    assert len(returning) == 3  # batches of 25, 25, 7
    assert [s.count("(?") for s in sent] == [1, 10, 10, 4, 1, 10, 10, 4, 1, 6]


async def test_mixed_key_sets_get_their_own_ids_and_defaults(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    seen = datetime(2023, 1, 2, 3, 4, 5, 6)
    records = [
        person(0),  # the first record has the fewest keys: the others are not cut to its set
        person(1, is_active=False, seen_at=seen),
        {"name": None, "score": 5, "email": "p2@example.com"},  # another key order
        person(3, is_active=False, seen_at=seen),
        person(4),
        {"email": "p5@example.com", "name": "person 5", "group": None, "score": 1},
    ]

    result = await BaseRepository(Person, session).bulk_create(records)

    assert (result.success_count, result.error_count) == (6, 0)
    emails = [r["email"] for r in records]
    assert_aligned(result.created_ids, emails, await stored(factory, Person, "email"))
    async with factory() as fresh:
        rows = {p.email: p for p in (await fresh.execute(select(Person))).scalars()}
    assert [rows[e].is_active for e in emails] == [True, False, True, False, True, True]
    assert [rows[e].score for e in emails] == [0, 0, 5, 0, 0, 1]
    assert rows["p1@example.com"].seen_at == seen
    assert rows["p2@example.com"].name is None
    assert {rows[e].created_at for e in emails} == {_now()}


async def test_ignore_conflicts_skips_in_batch_and_existing_duplicates(
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    few_rows_per_statement: None,
) -> None:
    async with factory() as setup, setup.begin():
        setup.add(Person(email="p3@example.com", name="already here"))
    records = [person(i) for i in range(14)]
    records[6] = person(1, name="in-batch duplicate of 1")
    records[12] = person(3, name="duplicate of an existing row")
    records[13] = person(6)  # 6 itself was replaced above: this one is new

    result = await BaseRepository(Person, session).bulk_create(
        records, batch_size=20, ignore_conflicts=True
    )

    skipped = {3: FailureKind.CONFLICT, 6: FailureKind.CONFLICT, 12: FailureKind.CONFLICT}
    assert {f.index: f.kind for f in result.failures} == skipped
    assert all("unique" in f.message.lower() for f in result.failures)
    assert (result.success_count, result.error_count) == (11, 3)
    created = [r["email"] for i, r in enumerate(records) if i not in skipped]
    by_id = await stored(factory, Person, "email")
    assert_aligned(result.created_ids, created, by_id)
    assert len(by_id) == 12
    async with factory() as fresh:
        names = dict((await fresh.execute(select(Person.email, Person.name))).all())
    assert names["p1@example.com"] == "person 1"  # the first of the two won
    assert names["p3@example.com"] == "already here"


async def test_a_failing_record_rolls_back_its_batch_only_and_is_named(
    session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    few_rows_per_statement: None,
) -> None:
    # The CHECK constraint is the database's to enforce: validation lets score=-1 through.
    # Record 17 sits in the second statement of the first batch (rows 0-24).
    records = [person(i, score=1) for i in range(40)]
    records[17] = person(17, score=-1)

    result = await BaseRepository(Person, session).bulk_create(records, batch_size=25)

    kinds = {f.index: f.kind for f in result.failures}
    assert kinds[17] is FailureKind.INTEGRITY
    assert "check" in result.failures[17].message.lower()
    assert {i for i, k in kinds.items() if k is FailureKind.BATCH_ROLLED_BACK} == set(range(25)) - {
        17
    }
    assert (result.success_count, result.error_count) == (15, 25)
    by_id = await stored(factory, Person, "email")
    assert sorted(by_id.values()) == sorted(r["email"] for r in records[25:])
    assert_aligned(result.created_ids, [r["email"] for r in records[25:]], by_id)


async def test_inside_a_callers_transaction_a_failed_batch_is_undone_alone_and_rollback_undoes_all(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(Person, session)
    records = [person(i) for i in range(30)]
    records[22] = person(22, score=-1)  # fails the second batch (20-29)

    transaction = await session.begin()
    result = await repo.bulk_create(records, batch_size=20)
    assert result.success_count == 20
    assert {f.index for f in result.failures} == set(range(20, 30))
    assert await repo.count() == 20  # the first batch, visible inside the transaction
    await transaction.rollback()

    assert await stored(factory, Person, "email") == {}

    created: list[int] = []

    async def create_then_give_up() -> None:
        async with session.begin():
            result = await repo.bulk_create([person(i) for i in range(50)], batch_size=20)
            created.append(result.success_count)
            raise RuntimeError("caller gives up")

    with pytest.raises(RuntimeError, match="caller gives up"):
        await create_then_give_up()
    assert created == [50]
    assert await stored(factory, Person, "email") == {}


async def test_a_trigger_writing_into_the_same_table_gets_returned_keys(
    engine: AsyncEngine, session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    # Each row's trigger takes the next rowid: counting keys from the first row would hand
    # record 1 the key of record 0's shadow row.
    records = [{"email": f"e{i}@x"} for i in range(12)]

    with inserts(engine) as sent:
        result = await BaseRepository(Event, session).bulk_create(records)

    assert result.success_count == 12
    assert result.created_ids == list(range(1, 24, 2))
    assert_aligned(
        result.created_ids, [r["email"] for r in records], await stored(factory, Event, "email")
    )
    assert all("RETURNING" in s for s in sent)


async def test_json_and_python_bind_processors_are_applied_and_uuid_keys_kept(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    records = [
        {"slug": "a", "payload": {"n": 1, "list": [1, 2]}, "tags": ["x", "y"]},
        {"slug": "b", "payload": None, "tags": None},
        {"slug": "c", "payload": [], "tags": ["z"]},
    ]
    repo = BaseRepository(Document, session)

    result = await repo.bulk_create(records)
    again = await repo.bulk_create(
        [{"slug": "a", "payload": {}}, {"slug": "d", "payload": {}}], ignore_conflicts=True
    )

    assert all(isinstance(i, uuid.UUID) for i in result.created_ids)
    assert_aligned(result.created_ids, ["a", "b", "c"], await stored(factory, Document, "slug"))
    assert [f.index for f in again.failures] == [0]
    assert_aligned(again.created_ids, ["d"], await stored(factory, Document, "slug"))
    async with factory() as fresh:
        docs = {d.slug: d for d in (await fresh.execute(select(Document))).scalars()}
        raw = dict((await fresh.execute(text("SELECT slug, tags FROM documents"))).all())
    assert (docs["a"].payload, docs["a"].tags) == ({"n": 1, "list": [1, 2]}, ["x", "y"])
    assert (docs["b"].tags, docs["c"].payload, docs["c"].tags) == (None, [], ["z"])
    assert raw["a"] == "x,y"  # stored through the TypeDecorator's processor


async def test_a_bind_expression_type_falls_back_to_sqlalchemy(
    engine: AsyncEngine, session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    records = [{"email": f"MiXed{i}@X.org"} for i in range(5)]

    with inserts(engine) as sent:
        result = await BaseRepository(Handle, session).bulk_create(records)

    assert result.success_count == 5
    assert "lower(" in sent[0]  # SQLAlchemy rendered the type's SQL
    assert_aligned(
        result.created_ids,
        [r["email"].lower() for r in records],
        await stored(factory, Handle, "email"),
    )


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 1, 2, 3, 4, 5),  # no microseconds: still written
        datetime(987, 6, 5, 4, 3, 2, 1),  # a three-digit year
        datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 1, 2, tzinfo=UTC),
    ],
    ids=["whole-second", "year-987", "aware", "utc"],
)
async def test_datetimes_are_stored_as_sqlalchemy_stores_them(
    value: datetime, session: AsyncSession, factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(Person, session)
    await repo.bulk_create([person(0, seen_at=value), person(1, seen_at=value)])  # all datetimes
    await repo.bulk_create([person(2, seen_at=value), person(3, seen_at=None)])  # and a None
    # The reference: SQLAlchemy's own executemany, given what the datetime rule makes of the
    # value (an aware one is stored as its UTC instant, naive).
    as_stored = value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    async with factory() as other, other.begin():
        await other.execute(insert(Person), [person(4, seen_at=as_stored), person(5, seen_at=None)])

    async with factory() as fresh:
        raw = dict((await fresh.execute(text("SELECT email, seen_at FROM people"))).all())
        kinds = set((await fresh.execute(text("SELECT typeof(is_active) FROM people"))).scalars())
    reference = raw["p4@example.com"]
    assert reference is not None
    assert [raw[f"p{i}@example.com"] for i in range(4)] == [reference] * 3 + [None]
    assert raw["p5@example.com"] is None
    assert kinds == {"integer"}
