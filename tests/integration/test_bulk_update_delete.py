"""bulk_update and bulk_delete on every database: exactly the matching rows, batch by batch.

The data is seeded with plain SQLAlchemy, and every expectation is checked by reading all rows
back (soft-deleted ones included) from a brand-new session.
"""

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import (
    BaseRepository,
    BulkOperationResult,
    ConfigurationError,
    EventBus,
    EventType,
    FailureKind,
    InvalidFilterError,
    RecordValidationError,
    RepositoryEvent,
)
from tests.models import Article, User, utcnow

NOW = datetime.now()
RECENT = NOW - timedelta(days=10)
OLD = NOW - timedelta(days=120)
ANCIENT = NOW - timedelta(days=400)

# name: column values. Each row is there to be caught, or missed, by one guide example.
SEED: dict[str, dict[str, Any]] = {
    "eng recent": {"department": "engineering", "salary": 70_000, "last_login": RECENT},
    "eng old login": {"department": "engineering", "salary": 40_000, "last_login": OLD},
    "sales low": {"department": "sales", "salary": 40_000, "last_login": OLD},
    "sales at limit": {"department": "sales", "salary": 50_000, "last_login": RECENT},
    "marketing low": {"department": "marketing", "salary": 30_000, "last_login": RECENT},
    "marketing inactive": {
        "department": "marketing",
        "salary": 30_000,
        "is_active": False,
        "last_login": OLD,
    },
    "support never logged in": {"department": "support", "salary": 20_000},
    "marketing no salary": {"department": "marketing", "last_login": RECENT},
    "eng deleted long ago": {
        "department": "engineering",
        "salary": 60_000,
        "last_login": OLD,
        "deleted_at": ANCIENT,
    },
    "sales deleted lately": {
        "department": "sales",
        "salary": 10_000,
        "last_login": OLD,
        "deleted_at": RECENT,
    },
    "old test user": {"email": "test_user@example.com", "created_at": OLD},
    "old testing user": {"email": "testing@example.com", "created_at": OLD},
    "new test user": {"email": "test_new@example.com", "created_at": RECENT},
}
SOFT_DELETED = {"eng deleted long ago", "sales deleted lately"}


class Recorder:
    def __init__(self) -> None:
        self.events: list[RepositoryEvent] = []

    async def __call__(self, event: RepositoryEvent) -> None:
        self.events.append(event)


async def seed(factory: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Insert SEED with plain SQLAlchemy; name -> id."""
    async with factory() as setup, setup.begin():
        users = {name: User(name=name, **values) for name, values in SEED.items()}
        setup.add_all(users.values())
    return {name: u.id for name, u in users.items()}


async def snapshot(factory: async_sessionmaker[AsyncSession]) -> dict[str, User]:
    """Every row, soft-deleted ones included, by name, from a session of its own."""
    async with factory() as fresh:
        return {u.name: u for u in await fresh.scalars(select(User))}


def ids_of(ids: dict[str, int], *names: str) -> list[int]:
    return sorted(ids[name] for name in names)


def unchanged(before: dict[str, User], after: dict[str, User], names: set[str]) -> None:
    for name in names:
        columns = User.__table__.columns.keys()
        assert {c: getattr(after[name], c) for c in columns} == {
            c: getattr(before[name], c) for c in columns
        }, f"{name} was changed"


# -- bulk_update -------------------------------------------------------------------------------


async def test_guide_update_by_department(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)
    started = datetime.now()

    # Update all users in a department
    result = await repo.bulk_update(
        filters={"department": "engineering"},
        update_data={"salary": 80000, "updated_at": datetime.now()},
    )

    changed = {"eng recent", "eng old login"}  # not the soft-deleted engineer
    assert (result.success_count, result.error_count) == (2, 0)
    assert result.affected_ids == ids_of(ids, *changed)
    after = await snapshot(session_factory)
    for name in changed:
        assert after[name].salary == 80_000
        assert after[name].updated_at is not None
        assert after[name].updated_at >= started
    unchanged(before, after, set(SEED) - changed)


async def test_guide_update_with_complex_filters(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)

    # Update with complex filters
    result = await repo.bulk_update(
        filters={"salary__lt": 50000, "department__in": ["sales", "marketing"], "is_active": True},
        update_data={"salary": 55000, "bonus_eligible": True},
        batch_size=50,
        emit_events=True,
    )

    changed = {"sales low", "marketing low"}
    assert (result.success_count, result.error_count) == (2, 0)
    assert result.affected_ids == ids_of(ids, *changed)
    after = await snapshot(session_factory)
    for name in changed:
        assert (after[name].salary, after[name].bonus_eligible) == (55_000, True)
    unchanged(before, after, set(SEED) - changed)


async def test_guide_conditional_update(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)

    old_date = datetime.now() - timedelta(days=90)

    result = await repo.bulk_update(
        filters={"last_login__lt": old_date, "is_active": True},
        update_data={
            "is_active": False,
            "deactivated_at": datetime.now(),
            "deactivation_reason": "inactive",
        },
    )

    # Not the one already inactive, not the soft-deleted ones, not a NULL last_login.
    changed = {"eng old login", "sales low"}
    assert result.success_count == 2
    assert result.affected_ids == ids_of(ids, *changed)
    after = await snapshot(session_factory)
    for name in changed:
        assert after[name].is_active is False
        assert after[name].deactivation_reason == "inactive"
        assert after[name].deactivated_at is not None
    unchanged(before, after, set(SEED) - changed)


async def test_update_that_makes_rows_stop_matching_visits_each_row_once(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with session_factory() as setup, setup.begin():
        setup.add_all(User(name=f"u{i}", is_active=i % 4 != 0) for i in range(20))
    all_rows = await snapshot(session_factory)
    active = sorted(u.id for u in all_rows.values() if u.is_active)
    reports: list[int] = []

    result = await BaseRepository(User, session).bulk_update(
        {"is_active": True}, {"is_active": False}, batch_size=3, progress=reports.append
    )

    assert result.success_count == len(active) == 15
    assert result.affected_ids == active  # each once, in key order
    assert reports == [3, 6, 9, 12, 15]
    assert not any(u.is_active for u in (await snapshot(session_factory)).values())


async def test_update_that_keeps_rows_matching_terminates(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    result = await BaseRepository(User, session).bulk_update(
        {"department": "marketing"}, {"status": "reviewed"}, batch_size=1
    )
    changed = {"marketing low", "marketing inactive", "marketing no salary"}
    assert result.affected_ids == ids_of(ids, *changed)
    after = await snapshot(session_factory)
    assert {name for name, u in after.items() if u.status == "reviewed"} == changed


async def test_update_failing_at_the_database_reports_the_batch_and_lands_the_rest(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with session_factory() as setup, setup.begin():
        setup.add_all(
            User(name=f"ops {i}", department="ops", email=f"o{i}@x.com") for i in range(5)
        )
    before = await snapshot(session_factory)
    order = sorted(before, key=lambda name: before[name].id)
    reports: list[int] = []

    # Two rows of one batch cannot share a unique email; a batch of one can.
    result = await BaseRepository(User, session).bulk_update(
        {"department": "ops"}, {"email": "same@x.com"}, batch_size=2, progress=reports.append
    )

    assert (result.success_count, result.error_count) == (1, 4)
    assert result.affected_ids == [before[order[4]].id]
    assert [f.ids for f in result.failures] == [
        (before[order[0]].id, before[order[1]].id),
        (before[order[2]].id, before[order[3]].id),
    ]
    assert all(f.kind is FailureKind.INTEGRITY for f in result.failures)
    assert len(result.errors) == 2
    assert reports[-1] == 5, "progress must count every row handled, failed ones included"
    after = await snapshot(session_factory)
    assert after[order[4]].email == "same@x.com"
    unchanged(before, after, set(order[:4]))


async def test_update_of_unknown_field_is_refused(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)
    with pytest.raises(RecordValidationError, match="nickname"):
        await repo.bulk_update({"department": "sales"}, {"nickname": "x"})
    with pytest.raises(RecordValidationError, match="salary"):
        await repo.bulk_update({"department": "sales"}, {"salary": "lots"})
    unchanged(before, await snapshot(session_factory), set(SEED))


BAD_FILTERS = [
    ({"nope": 1}, "nope"),
    ({"salary__between": (1, 2)}, "between"),
    ({"department__in": "sales"}, "department__in"),
    ({"salary__range": (1,)}, "salary__range"),
]


@pytest.mark.parametrize(("filters", "named"), BAD_FILTERS)
async def test_bad_filters_are_refused(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    filters: dict[str, Any],
    named: str,
) -> None:
    await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)
    with pytest.raises(InvalidFilterError, match=named):
        await repo.bulk_update(filters, {"status": "x"})
    with pytest.raises(InvalidFilterError, match=named):
        await repo.bulk_delete(filters, soft_delete=False)
    unchanged(before, await snapshot(session_factory), set(SEED))


@pytest.mark.parametrize("batch_size", [0, -5])
async def test_non_positive_batch_size_is_refused(session: AsyncSession, batch_size: int) -> None:
    repo = BaseRepository(User, session)
    with pytest.raises(ValueError, match="batch_size"):
        await repo.bulk_update({}, {"status": "x"}, batch_size=batch_size, all_rows=True)
    with pytest.raises(ValueError, match="batch_size"):
        await repo.bulk_delete({}, batch_size=batch_size, all_rows=True)


# -- bulk_delete -------------------------------------------------------------------------------


async def test_guide_soft_delete_hides_rows_and_stamps_them(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    bus, seen = EventBus(), Recorder()
    bus.subscribe(EventType.SOFT_DELETED, seen)
    bus.subscribe(EventType.DELETED, seen)
    repo = BaseRepository(User, session, event_bus=bus)
    started = utcnow()

    # Soft delete inactive users
    result = await repo.bulk_delete(
        filters={"is_active": False},
        soft_delete=True,  # Default
        emit_events=True,
    )

    target = ids["marketing inactive"]
    assert (result.success_count, result.affected_ids) == (1, [target])
    assert await repo.get(target) is None
    assert target not in [u.id for u in await repo.list()]
    assert await repo.count() == len(SEED) - len(SOFT_DELETED) - 1
    stamped = await repo.get(target, include_deleted=True)
    assert stamped is not None
    assert stamped.deleted_at is not None
    assert started <= stamped.deleted_at <= utcnow()  # naive UTC, like the column
    assert [(e.type, e.ids) for e in seen.events] == [(EventType.SOFT_DELETED, (target,))]
    unchanged(before, await snapshot(session_factory), set(SEED) - {"marketing inactive"})


async def test_default_delete_is_soft_on_a_model_with_deleted_at(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    result = await BaseRepository(User, session).bulk_delete({"department": "support"})
    assert result.affected_ids == [ids["support never logged in"]]
    after = await snapshot(session_factory)
    assert after["support never logged in"].deleted_at is not None


async def test_guide_hard_delete_escapes_like_wildcards(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)

    repo = BaseRepository(User, session)
    # Hard delete old test data
    result = await repo.bulk_delete(
        filters={
            "email__startswith": "test_",
            "created_at__lt": datetime.now() - timedelta(days=30),
        },
        soft_delete=False,  # Permanent deletion
        batch_size=25,
    )

    assert (result.success_count, result.affected_ids) == (1, [ids["old test user"]])
    remaining = await snapshot(session_factory)
    assert set(remaining) == set(SEED) - {"old test user"}  # "testing@" is not "test_"


async def test_guide_cleanup_purges_only_old_soft_deleted_rows(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    bus, seen = EventBus(), Recorder()
    for kind in EventType:
        bus.subscribe(kind, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    # Cleanup old soft-deleted records
    cleanup_date = datetime.now() - timedelta(days=365)

    result = await repo.bulk_delete(
        filters={"deleted_at__lt": cleanup_date, "deleted_at__isnotnull": True},
        soft_delete=False,  # Permanent cleanup
        emit_events=False,  # Skip events for cleanup
    )

    assert (result.success_count, result.affected_ids) == (1, [ids["eng deleted long ago"]])
    after = await snapshot(session_factory)
    assert set(after) == set(SEED) - {"eng deleted long ago"}
    unchanged(before, after, set(after))
    assert seen.events == []


async def test_soft_deleted_rows_are_left_alone_unless_asked_for(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    ids = await seed(session_factory)
    before = await snapshot(session_factory)
    repo = BaseRepository(User, session)
    sales = {"sales low", "sales at limit"}

    updated = await repo.bulk_update({"department": "sales"}, {"status": "a"})
    assert updated.affected_ids == ids_of(ids, *sales)

    updated = await repo.bulk_update({"department": "sales"}, {"status": "b"}, include_deleted=True)
    assert updated.affected_ids == ids_of(ids, *sales, "sales deleted lately")

    # Naming deleted_at in the filters is asking about deleted rows themselves.
    updated = await repo.bulk_update({"deleted_at__isnotnull": True}, {"role": "archived"})
    assert updated.affected_ids == ids_of(ids, *SOFT_DELETED)

    # A soft delete never re-stamps a row that is already deleted.
    stamped = await repo.bulk_delete({"department": "sales"}, include_deleted=True)
    assert stamped.affected_ids == ids_of(ids, *sales)
    after = await snapshot(session_factory)
    assert after["sales deleted lately"].deleted_at == before["sales deleted lately"].deleted_at

    purged = await repo.bulk_delete({"department": "engineering"}, soft_delete=False)
    assert purged.affected_ids == ids_of(ids, "eng recent", "eng old login")
    assert "eng deleted long ago" in await snapshot(session_factory)

    purged = await repo.bulk_delete(
        {"department": "engineering"}, soft_delete=False, include_deleted=True
    )
    assert purged.affected_ids == [ids["eng deleted long ago"]]
    after = await snapshot(session_factory)
    assert not any(u.department == "engineering" for u in after.values())
    assert {u.role for name, u in after.items() if name in SOFT_DELETED} == {"archived"}


async def test_hard_delete_in_small_batches_removes_every_match(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with session_factory() as setup, setup.begin():
        setup.add_all(User(name=f"u{i}", type="temporary" if i % 3 else "kept") for i in range(30))
    before = await snapshot(session_factory)
    temporary = sorted(u.id for u in before.values() if u.type == "temporary")

    result = await BaseRepository(User, session).bulk_delete(
        {"type": "temporary"}, soft_delete=False, batch_size=4
    )

    assert result.success_count == len(temporary) == 20
    assert result.affected_ids == temporary
    after = await snapshot(session_factory)
    assert {u.type for u in after.values()} == {"kept"}
    assert len(after) == 10


async def test_article_bulk_delete_is_hard_by_default(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    async with session_factory() as setup, setup.begin():
        setup.add_all(Article(title=f"a{i}", published=i < 2) for i in range(5))
    repo = BaseRepository(Article, session)

    with pytest.raises(ConfigurationError, match="soft-delete"):
        await repo.bulk_delete({"published": False}, soft_delete=True)
    result = await repo.bulk_delete({"published": False})

    assert result.success_count == 3
    async with session_factory() as fresh:
        left = sorted((await fresh.scalars(select(Article.title))).all())
    assert left == ["a0", "a1"]


# -- batches -----------------------------------------------------------------------------------

CountQueries = Callable[[], AbstractContextManager[Any]]
CHANGES = ["update", "soft delete", "hard delete"]


async def change_batch_rows(
    repo: BaseRepository[User, Any, Any], change: str, size: int, reports: list[int]
) -> BulkOperationResult:
    """Change the rows of department "batch": a delete makes them stop matching, the update
    leaves them matching, so only keyset pagination keeps a row from being visited twice."""
    if change == "update":
        return await repo.bulk_update(
            {"department": "batch"}, {"status": "seen"}, batch_size=size, progress=reports.append
        )
    return await repo.bulk_delete(
        {"department": "batch"},
        soft_delete=change == "soft delete",
        batch_size=size,
        progress=reports.append,
    )


async def seed_batch_rows(factory: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    """``count`` rows of department "batch" among others, one of them already soft-deleted."""
    async with factory() as setup, setup.begin():
        matching = [User(name=f"b{i}", department="batch") for i in range(count)]
        setup.add_all([User(name="other", department="other"), *matching])
        setup.add(User(name="gone", department="batch", deleted_at=ANCIENT))
    return sorted(u.id for u in matching)


def batch_lookups(statements: list[str]) -> int:
    """Statements that choose a batch: each has a LIMIT (MariaDB's change by key has none)."""
    return sum(1 for s in statements if re.search(r"\bLIMIT\b", s, re.IGNORECASE))


def whole_call_attempts(session: AsyncSession) -> int:
    """PostgreSQL first tries the whole change as one statement, which changes nothing when
    more rows than ``batch_size`` match: one more lookup, before the batches."""
    return 1 if session.get_bind().dialect.name == "postgresql" else 0


def assert_changed(change: str, after: dict[str, User], names: set[str]) -> None:
    if change == "hard delete":
        assert not names & set(after)
    elif change == "soft delete":
        assert all(after[n].deleted_at is not None for n in names)
    else:
        assert all(after[n].status == "seen" for n in names)


def recording_repo(session: AsyncSession) -> tuple[BaseRepository[User, Any, Any], Recorder]:
    bus, seen = EventBus(), Recorder()
    for kind in EventType:
        bus.subscribe(kind, seen)
    return BaseRepository(User, session, event_bus=bus), seen


@pytest.mark.parametrize("change", CHANGES)
async def test_a_short_batch_is_the_last_one(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: CountQueries,
    change: str,
) -> None:
    ids = await seed_batch_rows(session_factory, 10)
    before = await snapshot(session_factory)
    repo, seen = recording_repo(session)
    reports: list[int] = []

    with count_queries() as log:
        result = await change_batch_rows(repo, change, 4, reports)

    assert (result.success_count, result.error_count) == (10, 0)
    assert result.affected_ids == ids
    assert reports == [4, 8, 10]
    assert [len(e.ids) for e in seen.events] == [4, 4, 2]
    # Batches of 4, 4 and 2: the short one ends the walk, no look for a fourth batch.
    assert batch_lookups(log.statements) == 3 + whole_call_attempts(session), log.statements
    after = await snapshot(session_factory)
    assert_changed(change, after, {f"b{i}" for i in range(10)})
    unchanged(before, after, {"other", "gone"})


@pytest.mark.parametrize("change", CHANGES)
async def test_batches_ending_exactly_at_batch_size(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: CountQueries,
    change: str,
) -> None:
    ids = await seed_batch_rows(session_factory, 8)
    before = await snapshot(session_factory)
    repo, seen = recording_repo(session)
    reports: list[int] = []

    with count_queries() as log:
        result = await change_batch_rows(repo, change, 4, reports)

    assert (result.success_count, result.error_count) == (8, 0)
    assert result.affected_ids == ids
    # A full last batch cannot tell that nothing follows: one more look finds nothing, and
    # neither reports progress nor publishes an event.
    assert reports == [4, 8]
    assert [len(e.ids) for e in seen.events] == [4, 4]
    assert batch_lookups(log.statements) == 3 + whole_call_attempts(session), log.statements
    after = await snapshot(session_factory)
    assert_changed(change, after, {f"b{i}" for i in range(8)})
    unchanged(before, after, {"other", "gone"})


@pytest.mark.parametrize("change", CHANGES)
async def test_one_batch_holding_every_match(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: CountQueries,
    change: str,
) -> None:
    ids = await seed_batch_rows(session_factory, 5)
    repo, seen = recording_repo(session)
    reports: list[int] = []

    with count_queries() as log:
        result = await change_batch_rows(repo, change, 100, reports)

    assert result.affected_ids == ids
    assert reports == [5]
    assert [e.ids for e in seen.events] == [tuple(ids)]
    assert batch_lookups(log.statements) == 1, log.statements
    assert_changed(change, await snapshot(session_factory), {f"b{i}" for i in range(5)})


@pytest.mark.parametrize("change", CHANGES)
async def test_batches_inside_the_callers_transaction(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    change: str,
) -> None:
    ids = await seed_batch_rows(session_factory, 7)
    before = await snapshot(session_factory)
    repo, seen = recording_repo(session)
    reports: list[int] = []

    async with session.begin():
        result = await change_batch_rows(repo, change, 3, reports)
        # Three SAVEPOINTs released, nothing committed, no event before the caller's commit.
        unchanged(before, await snapshot(session_factory), set(before))
        assert seen.events == []

    assert result.affected_ids == ids
    assert reports == [3, 6, 7]
    assert [len(e.ids) for e in seen.events] == [3, 3, 1]
    after = await snapshot(session_factory)
    assert_changed(change, after, {f"b{i}" for i in range(7)})
    unchanged(before, after, {"other", "gone"})


class Rollback(Exception):
    """Raised in a test to make the caller's block roll back."""


@pytest.mark.parametrize("change", CHANGES)
async def test_batches_rolled_back_with_the_callers_transaction(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    change: str,
) -> None:
    await seed_batch_rows(session_factory, 7)
    before = await snapshot(session_factory)
    repo, seen = recording_repo(session)

    async def rolled_back() -> None:
        async with session.begin():
            result = await change_batch_rows(repo, change, 3, [])
            assert result.success_count == 7
            raise Rollback

    with pytest.raises(Rollback):
        await rolled_back()

    unchanged(before, await snapshot(session_factory), set(before))
    assert seen.events == []


# -- PostgreSQL: the whole-call attempt, batches by key range ----------------------------------


def only_on_postgresql(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the whole-call attempt and key-range batches are PostgreSQL's")


async def test_a_failing_whole_call_attempt_is_redone_in_key_order(
    engine: AsyncEngine,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    only_on_postgresql(engine)
    ids = await seed_batch_rows(session_factory, 9)
    async with engine.begin() as conn:
        # New versions of b0-b2 go after the other rows: a scan in the table's own order (the
        # whole-call attempt) meets b3, b4, b5 first; key order meets b0, b1, b2 first.
        await conn.execute(
            text("UPDATE users SET status = 'moved' WHERE id <= :id"), {"id": ids[2]}
        )
        # A row another table points at cannot be deleted: b4.
        await conn.execute(text("CREATE TABLE pins (user_id INTEGER REFERENCES users (id))"))
        await conn.execute(text("INSERT INTO pins VALUES (:id)"), {"id": ids[4]})
    try:
        reports: list[int] = []
        result = await BaseRepository(User, session).bulk_delete(
            {"department": "batch"}, soft_delete=False, batch_size=3, progress=reports.append
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE pins"))

    # The failed whole-call attempt left no trace; in key order only b3-b5's batch fails.
    assert (result.success_count, result.error_count) == (6, 3)
    assert result.affected_ids == ids[:3] + ids[6:]
    assert [f.ids for f in result.failures] == [tuple(ids[3:6])]
    assert result.failures[0].kind is FailureKind.INTEGRITY
    assert reports == [3, 6, 9]
    after = await snapshot(session_factory)
    assert {n for n in after if n.startswith("b")} == {"b3", "b4", "b5"}


class InheritanceBase(DeclarativeBase):
    pass


class Parent(InheritanceBase):
    """Rows of a child table (``INHERITS``) show through it, with ctids of their own file."""

    __tablename__ = "baserepo_parent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    v: Mapped[int] = mapped_column(Integer)


@pytest.mark.parametrize("change", ["update", "hard delete"])
async def test_rows_sharing_a_ctid_across_inherited_tables_are_changed_once(
    engine: AsyncEngine, session: AsyncSession, change: str
) -> None:
    only_on_postgresql(engine)
    async with engine.begin() as conn:
        for statement in (
            "DROP TABLE IF EXISTS baserepo_child, baserepo_parent",
            "CREATE TABLE baserepo_parent (id INTEGER PRIMARY KEY, v INTEGER)",
            "CREATE TABLE baserepo_child () INHERITS (baserepo_parent)",
            # Same ctids (0,1)..(0,4) in both files, keys 1-4 in the parent, 5-8 in the child.
            "INSERT INTO baserepo_parent SELECT g, 0 FROM generate_series(1, 4) g",
            "INSERT INTO baserepo_child SELECT g, 0 FROM generate_series(5, 8) g",
        ):
            await conn.execute(text(statement))
    try:
        repo = BaseRepository(Parent, session)
        if change == "update":
            result = await repo.bulk_update({"v": 0}, {"v": 0}, batch_size=2)
        else:
            result = await repo.bulk_delete({}, soft_delete=False, batch_size=2, all_rows=True)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE baserepo_child, baserepo_parent"))

    # The update keeps every row matching: a row reached through another table's ctid would
    # be changed in a batch not its own and again in its own.
    assert result.affected_ids == list(range(1, 9))
    assert result.success_count == 8


@pytest.mark.parametrize("batch_size", [2, 100])
async def test_update_applies_onupdate_defaults(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], batch_size: int
) -> None:
    await seed_batch_rows(session_factory, 5)
    started = utcnow()

    result = await BaseRepository(User, session).bulk_update(
        {"department": "batch"}, {"status": "seen"}, batch_size=batch_size
    )

    assert result.success_count == 5
    after = await snapshot(session_factory)
    for i in range(5):
        stamped = after[f"b{i}"].updated_at
        assert stamped is not None
        assert started <= stamped <= utcnow()
    assert after["other"].updated_at is None
    assert after["gone"].updated_at is None
