"""bulk_update_rows on every database: each row gets its own values, found by its key.

Rows are seeded with plain SQLAlchemy; every expectation is checked by reading all rows back
(soft-deleted ones included) from a brand-new session.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, EventBus, EventType, FailureKind, RepositoryEvent
from tests.integration.cache_stack import CacheStack, open_stack
from tests.kinds_models import KindsBase, MomentDoc, Sample
from tests.models import User, utcnow


class Recorder:
    def __init__(self) -> None:
        self.events: list[RepositoryEvent] = []

    async def __call__(self, event: RepositoryEvent) -> None:
        self.events.append(event)


def recording_bus() -> tuple[EventBus, Recorder]:
    bus, recorder = EventBus(), Recorder()
    bus.subscribe(EventType.UPDATED, recorder)
    return bus, recorder


async def seed(factory: async_sessionmaker[AsyncSession], count: int, **extra: Any) -> list[int]:
    async with factory() as setup, setup.begin():
        users = [User(name=f"u{i}", salary=1_000 + i, **extra) for i in range(count)]
        setup.add_all(users)
    return [u.id for u in users]


async def rows_by_id(factory: async_sessionmaker[AsyncSession]) -> dict[int, User]:
    async with factory() as fresh:
        return {u.id: u for u in await fresh.scalars(select(User))}


async def test_each_row_gets_its_own_values_and_ids_follow_input_order(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 6)
    started = utcnow()
    chosen = [ids[4], ids[0], ids[2]]  # not in key order: the result must keep this order
    bus, recorder = recording_bus()
    repo = BaseRepository(User, session, event_bus=bus)

    result = await repo.bulk_update_rows(
        [{"id": key, "salary": 50_000 + key, "department": f"d{key}"} for key in chosen]
    )

    assert (result.success_count, result.error_count, result.failures) == (3, 0, [])
    assert result.affected_ids == chosen
    after = await rows_by_id(session_factory)
    for key in ids:
        row = after[key]
        if key in chosen:
            assert (row.salary, row.department) == (50_000 + key, f"d{key}")
            assert row.updated_at is not None
            assert row.updated_at >= started
        else:
            assert (row.salary, row.department, row.updated_at) == (
                1_000 + ids.index(key),
                None,
                None,
            )
    assert [e.ids for e in recorder.events] == [tuple(chosen)]
    assert recorder.events[0].data[0] == {
        "id": chosen[0],
        "salary": 50_000 + chosen[0],
        "department": f"d{chosen[0]}",
    }


async def test_empty_input_does_nothing(session: AsyncSession) -> None:
    bus, recorder = recording_bus()

    result = await BaseRepository(User, session, event_bus=bus).bulk_update_rows([])

    assert (result.success_count, result.error_count, result.affected_ids) == (0, 0, [])
    assert recorder.events == []


@pytest.mark.parametrize(
    ("rows", "batch_size", "message"),
    [
        (None, None, "rows must be an iterable or async iterable of records, got NoneType"),
        ({"id": 1, "name": "one"}, None, "rows must be an iterable of records, got one dict"),
        ("id=1", None, "rows must be an iterable or async iterable of records, got str"),
        ([{"id": 1, "name": "one"}], "10", "batch_size must be an int"),
    ],
)
async def test_wrong_typed_arguments_are_refused_naming_them_before_any_write(
    session_factory: async_sessionmaker[AsyncSession], rows: Any, batch_size: Any, message: str
) -> None:
    ids = await seed(session_factory, 1)
    async with session_factory() as session:
        with pytest.raises(TypeError, match=message):
            await BaseRepository(User, session).bulk_update_rows(rows, batch_size=batch_size)
    stored = await rows_by_id(session_factory)
    assert [(id_, user.name) for id_, user in stored.items()] == [(ids[0], "u0")]


async def test_duplicate_keys_last_wins_and_the_earlier_are_reported(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)

    result = await BaseRepository(User, session).bulk_update_rows(
        [
            {"id": ids[0], "salary": 1},
            {"id": ids[1], "salary": 2},
            {"id": ids[0], "salary": 3},
            {"id": ids[0], "salary": 4},
        ]
    )

    assert result.success_count == 2
    assert result.affected_ids == [ids[1], ids[0]]  # the winner's position: record 3
    assert [(f.index, f.kind) for f in result.failures] == [
        (0, FailureKind.DUPLICATE),
        (2, FailureKind.DUPLICATE),
    ]
    assert result.error_count == 2
    after = await rows_by_id(session_factory)
    assert (after[ids[0]].salary, after[ids[1]].salary) == (4, 2)


async def test_missing_key_unknown_field_and_bad_value_are_validation_failures(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)

    result = await BaseRepository(User, session).bulk_update_rows(
        [
            {"salary": 5},
            {"id": ids[0], "salary": 6, "nickname": "x"},
            {"id": ids[1], "salary": "lots"},
            {"id": ids[1]},
            {"id": ids[1], "salary": 7},
        ]
    )

    assert (result.success_count, result.affected_ids) == (1, [ids[1]])
    failures = {f.index: f for f in result.failures}
    assert sorted(failures) == [0, 1, 2, 3]
    assert all(f.kind is FailureKind.VALIDATION for f in failures.values())
    assert failures[0].field == "id"
    assert "missing_key" in failures[0].message
    assert failures[1].field == "nickname"
    assert failures[2].field == "salary"
    assert failures[3].record == {"id": ids[1]}
    after = await rows_by_id(session_factory)
    assert (after[ids[0]].salary, after[ids[1]].salary) == (1_000, 7)


async def test_missing_and_soft_deleted_rows_are_not_found_unless_included(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    alive = await seed(session_factory, 1)
    deleted = await seed(session_factory, 1, deleted_at=datetime(2020, 1, 1))
    absent = max(alive + deleted) + 1_000
    repo = BaseRepository(User, session)
    rows = [
        {"id": absent, "salary": 1},
        {"id": deleted[0], "salary": 2},
        {"id": alive[0], "salary": 3},
    ]

    result = await repo.bulk_update_rows(rows)

    assert (result.success_count, result.affected_ids) == (1, [alive[0]])
    assert [(f.index, f.kind, f.ids) for f in result.failures] == [
        (0, FailureKind.NOT_FOUND, (absent,)),
        (1, FailureKind.NOT_FOUND, (deleted[0],)),
    ]
    assert (await rows_by_id(session_factory))[deleted[0]].salary == 1_000

    again = await repo.bulk_update_rows(rows, include_deleted=True)

    assert again.affected_ids == [deleted[0], alive[0]]
    assert [f.index for f in again.failures] == [0]
    assert (await rows_by_id(session_factory))[deleted[0]].salary == 2


async def test_fields_limit_what_is_written(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)
    repo = BaseRepository(User, session)

    result = await repo.bulk_update_rows(
        [{"id": key, "salary": 9, "name": "renamed", "junk": 1} for key in ids], fields=["salary"]
    )

    assert result.affected_ids == ids
    after = await rows_by_id(session_factory)
    assert [(after[k].salary, after[k].name) for k in ids] == [(9, "u0"), (9, "u1")]
    with pytest.raises(ValueError, match="'nope'"):
        await repo.bulk_update_rows([{"id": ids[0], "salary": 1}], fields=["salary", "nope"])
    with pytest.raises(ValueError, match="primary key"):
        await repo.bulk_update_rows([{"id": ids[0], "salary": 1}], fields=["id"])


async def test_rows_writing_different_columns_each_write_only_their_own(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 3)

    result = await BaseRepository(User, session).bulk_update_rows(
        [
            {"id": ids[0], "salary": 10},
            {"id": ids[1], "department": "ops"},
            {"id": ids[2], "salary": 30, "department": None},
        ]
    )

    assert result.affected_ids == ids
    after = await rows_by_id(session_factory)
    assert [(after[k].salary, after[k].department) for k in ids] == [
        (10, None),
        (1_001, "ops"),
        (30, None),
    ]


class SalaryChange(BaseModel):
    id: int
    salary: int | None = None
    department: str | None = None


@dataclass
class Rename:
    id: int
    name: str


async def test_pydantic_models_and_dataclasses(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)
    repo = BaseRepository(User, session)

    # A pydantic row writes what it was given: department stays as it is.
    first = await repo.bulk_update_rows([SalaryChange(id=ids[0], salary=77)])
    second = await repo.bulk_update_rows([Rename(id=ids[1], name="dc")])

    assert (first.affected_ids, second.affected_ids) == ([ids[0]], [ids[1]])
    after = await rows_by_id(session_factory)
    assert (after[ids[0]].salary, after[ids[0]].department, after[ids[0]].name) == (77, None, "u0")
    assert (after[ids[1]].name, after[ids[1]].salary) == ("dc", 1_001)


async def test_batches_each_commit_and_publish_their_ids(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: Callable[[], AbstractContextManager[Any]],
) -> None:
    ids = await seed(session_factory, 5)
    bus, recorder = recording_bus()

    with count_queries() as log:
        result = await BaseRepository(User, session, event_bus=bus).bulk_update_rows(
            ({"id": key, "salary": key * 2} for key in ids), batch_size=2
        )

    assert result.affected_ids == ids
    assert [e.ids for e in recorder.events] == [tuple(ids[:2]), tuple(ids[2:4]), (ids[4],)]
    updates = [s for s in log.statements if s.lstrip().upper().startswith(("UPDATE", "WITH"))]
    assert len(updates) == 3  # one statement per batch, not one per row
    after = await rows_by_id(session_factory)
    assert [after[k].salary for k in ids] == [k * 2 for k in ids]


async def test_a_call_larger_than_a_statement_writes_every_row_its_own_values(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: Callable[[], AbstractContextManager[Any]],
) -> None:
    # Past one statement's rows on every database (SQLite's VALUES join: 2,000; the CASE
    # form: 500), with two columns per row and soft-deleted rows among them.
    ids = await seed(session_factory, 4_100)
    async with session_factory() as setup, setup.begin():
        await setup.execute(
            update(User).where(User.id.in_(ids[::1000])).values(deleted_at=datetime(2020, 1, 1))
        )
    rows = [{"id": key, "salary": key * 3, "department": f"d{key}"} for key in reversed(ids)]

    with count_queries() as log:
        result = await BaseRepository(User, session).bulk_update_rows(rows)

    alive = [key for key in reversed(ids) if key not in ids[::1000]]
    assert result.affected_ids == alive
    assert sorted(f.index for f in result.failures) == sorted(
        len(ids) - 1 - ids.index(key) for key in ids[::1000]
    )
    updates = [s for s in log.statements if s.lstrip().upper().startswith(("UPDATE", "WITH"))]
    assert 1 <= len(updates) <= 9  # a statement per 500 to 10,000 rows, never per row
    after = await rows_by_id(session_factory)
    assert all((after[key].salary, after[key].department) == (key * 3, f"d{key}") for key in alive)
    assert all(after[key].salary == 1_000 + ids.index(key) for key in ids[::1000])


async def test_a_refused_batch_is_reported_and_the_others_stand(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 4)
    async with session_factory() as setup, setup.begin():
        setup.add(User(name="holder", email="taken@example.com"))

    result = await BaseRepository(User, session).bulk_update_rows(
        [
            {"id": ids[0], "email": "a@example.com"},
            {"id": ids[1], "email": "b@example.com"},
            {"id": ids[2], "email": "taken@example.com"},
            {"id": ids[3], "email": "d@example.com"},
        ],
        batch_size=2,
    )

    assert result.affected_ids == ids[:2]
    assert [(f.index, f.kind) for f in result.failures] == [
        (2, FailureKind.INTEGRITY),
        (3, FailureKind.INTEGRITY),
    ]
    after = await rows_by_id(session_factory)
    assert [after[k].email for k in ids] == ["a@example.com", "b@example.com", None, None]


async def test_objects_in_the_session_see_the_new_values(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)
    held = {u.id: u for u in await session.scalars(select(User))}
    await session.commit()

    await BaseRepository(User, session).bulk_update_rows(
        [{"id": ids[0], "salary": 5}, {"id": ids[1], "salary": 6}]
    )

    assert (held[ids[0]].salary, held[ids[1]].salary) == (5, 6)
    assert held[ids[0]].updated_at is not None
    again = {u.id: u for u in await session.scalars(select(User))}
    assert (again[ids[0]].salary, again[ids[1]].salary) == (5, 6)


async def test_inside_the_callers_transaction_a_rollback_undoes_it(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 2)
    bus, recorder = recording_bus()

    async with session.begin():
        result = await BaseRepository(User, session, event_bus=bus).bulk_update_rows(
            [{"id": key, "salary": 1} for key in ids]
        )
        assert result.success_count == 2
        await session.rollback()

    assert [u.salary for u in (await rows_by_id(session_factory)).values()] == [1_000, 1_001]
    assert recorder.events == []  # the event waited for a commit that never came


@pytest.fixture(params=["memory", "redis"])
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def test_cached_reads_see_the_update(
    session_factory: async_sessionmaker[AsyncSession], stack: CacheStack
) -> None:
    ids = await seed(session_factory, 2)
    config = stack.config()
    async with session_factory() as reader:
        before = await BaseRepository(User, reader, config).list(id__in=ids)
        assert [u.salary for u in before] == [1_000, 1_001]

    async with session_factory() as writer:
        await BaseRepository(User, writer, config).bulk_update_rows(
            [{"id": ids[0], "salary": 8}, {"id": ids[1], "salary": 9}]
        )

    async with session_factory() as reader:
        after = await BaseRepository(User, reader, config).list(id__in=ids)
        assert sorted(u.salary for u in after) == [8, 9]


@pytest.fixture
async def kind_tables(engine: AsyncEngine, tables: None) -> AsyncIterator[None]:
    only = [Sample.__table__, MomentDoc.__table__]
    async with engine.begin() as conn:
        await conn.run_sync(KindsBase.metadata.drop_all, tables=only)
        await conn.run_sync(KindsBase.metadata.create_all, tables=only)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(KindsBase.metadata.drop_all, tables=only)


@pytest.mark.usefixtures("kind_tables")
async def test_column_kinds_round_trip_per_row(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
    samples = await BaseRepository(Sample, session).bulk_create([{"word": "a"}, {"word": "b"}])
    docs = await BaseRepository(MomentDoc, session).bulk_create([{"doc": None}, {"doc": None}])
    sample_rows = [
        {
            "id": key,
            "amount": Decimal(f"{n}.25"),
            "at_tz": moment + timedelta(hours=n),
            "token": UUID(int=n + 1),
            "flag": n == 1,
            "day": date(2024, 1, n + 1),
        }
        for n, key in enumerate(samples.created_ids)
    ]
    # JSON cannot travel as a PostgreSQL array: these rows take the CASE form there.
    doc_rows = [
        {"id": key, "doc": {"n": n, "tags": ["x", n]}, "at_tz": moment}
        for n, key in enumerate(docs.created_ids)
    ]

    first = await BaseRepository(Sample, session).bulk_update_rows(sample_rows)
    second = await BaseRepository(MomentDoc, session).bulk_update_rows(doc_rows)

    assert (first.affected_ids, second.affected_ids) == (samples.created_ids, docs.created_ids)
    async with session_factory() as fresh:
        stored = {s.id: s for s in await fresh.scalars(select(Sample))}
        stored_docs = {d.id: d for d in await fresh.scalars(select(MomentDoc))}
    for n, key in enumerate(samples.created_ids):
        row = stored[key]
        at_tz = row.at_tz if row.at_tz and row.at_tz.tzinfo else row.at_tz.replace(tzinfo=UTC)
        assert (row.amount, at_tz, row.token) == (
            Decimal(f"{n}.25"),
            moment + timedelta(hours=n),
            UUID(int=n + 1),
        )
        assert (row.flag, row.day, row.word) == (n == 1, date(2024, 1, n + 1), "ab"[n])
    for n, key in enumerate(docs.created_ids):
        assert stored_docs[key].doc == {"n": n, "tags": ["x", n]}


async def test_async_iterable_input(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory, 3)

    async def produce() -> AsyncIterator[dict[str, Any]]:
        for key in ids:
            yield {"id": key, "salary": -key}

    result = await BaseRepository(User, session).bulk_update_rows(produce())

    assert result.affected_ids == ids
    assert [r.salary for r in (await rows_by_id(session_factory)).values()] == [-k for k in ids]
