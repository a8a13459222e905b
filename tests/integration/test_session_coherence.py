"""Issue 8: what a session holds, what a cached read returns and what the ORM writes always
agree with the database, on every database, with the cache off, in process and on Redis.

The scenarios are the ones users hit: a long-lived session (``expire_on_commit`` True and
False) that keeps objects across writes, a request per session, writes made through the
session itself, and a caller cancelled after its commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import ForeignKey, String, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from baserepo import (
    BaseRepository,
    CacheConfig,
    DatabaseUnavailableError,
    EventType,
    RepositoryDatabaseError,
    RepositoryEvent,
)
from baserepo._events import EventBus
from tests.integration.cache_coherence_support import (
    Gate,
    Stack,
    install_gate,
    person,
    seed,
    selects_on,
)
from tests.models import User

Repo = BaseRepository[Any, Any, Any]
CACHES = ["none", "memory", "redis"]
SLOW_MACHINE = 5.0
"""Each backend call's budget (``operation_timeout``, 0.25 s by default): these tests are about
coherence, not about a Redis call that a loaded two-core machine delayed past the budget (that
is test_cache_outages.py's subject)."""


def _server(request: pytest.FixtureRequest) -> tuple[str, Redis | None]:
    # Sync, so that it may start the Redis fixture lazily (not allowed in an async fixture).
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_client")
    return request.param, None


@pytest.fixture(params=CACHES)
def any_server(request: pytest.FixtureRequest) -> tuple[str, Redis | None]:
    return _server(request)


@pytest.fixture(params=CACHES[1:])
def cached_server(request: pytest.FixtureRequest) -> tuple[str, Redis | None]:
    return _server(request)


@pytest.fixture
async def any_stack(any_server: tuple[str, Redis | None]) -> AsyncIterator[Stack | None]:
    """No cache, the in-process cache, or Redis."""
    kind, server = any_server
    if kind == "none":
        yield None
        return
    opened = Stack(kind, server)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def stack(cached_server: tuple[str, Redis | None]) -> AsyncIterator[Stack]:
    """The in-process cache or Redis."""
    opened = Stack(*cached_server)
    try:
        yield opened
    finally:
        await opened.close()


def patient(stack: Stack) -> CacheConfig:
    """A config of the stack (another process, on Redis) with a generous call budget."""
    return stack.config(operation_timeout=SLOW_MACHINE)


def config_of(stack: Stack | None) -> CacheConfig | None:
    return patient(stack) if stack is not None else None


async def settle(config: CacheConfig | None) -> None:
    if config is not None:
        await config.settle()


async def fresh_salary(factory: async_sessionmaker[AsyncSession], user_id: int) -> Any:
    """The database's value, read with no cache and no identity map in the way."""
    async with factory() as session:
        return await session.scalar(select(User.salary).where(User.id == user_id))


# -- 1. writes keep the session true -------------------------------------------------------


@pytest.mark.parametrize("expire_on_commit", [False, True], ids=["keep", "expire"])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["own", "caller"])
async def test_bulk_update_refreshes_objects_the_session_holds(
    engine: AsyncEngine,
    session_factory: async_sessionmaker[AsyncSession],
    any_stack: Stack | None,
    expire_on_commit: bool,
    in_transaction: bool,
) -> None:
    ids = await seed(session_factory)
    config = config_of(any_stack)
    async with AsyncSession(engine, expire_on_commit=expire_on_commit) as session:
        repo: Repo = BaseRepository(User, session, config)

        async def scenario() -> None:
            held = await repo.list(department="eng")  # kept referenced across the write
            await settle(config)
            result = await repo.bulk_update({"department": "eng"}, {"salary": 200})
            assert result.success_count == len(held)
            again = await repo.list(department="eng")
            assert [u.salary for u in again] == [200] * len(held)
            assert all(u.salary == 200 for u in held)
            got = await repo.get(held[0].id)
            assert got is not None
            assert got.salary == 200
            # The onupdate stamp was computed once and given to the held objects too.
            assert held[0].updated_at is not None

        if in_transaction:
            async with session.begin():
                await scenario()
        else:
            await scenario()
    await settle(config)
    # No stale row reached the shared cache: a new session (another process) sees 200.
    async with session_factory() as other:
        rows = await BaseRepository(User, other, config_of(any_stack)).list(department="eng")
        assert rows
        assert {u.salary for u in rows} == {200}
    assert await fresh_salary(session_factory, ids[1]) == 200


async def test_a_small_session_and_a_big_batch(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    """Fewer objects held than keys changed: the session is walked instead of the batch, and
    only the objects the write reached change."""
    ids = await seed(session_factory)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config_of(any_stack))
        eng = await repo.get(ids[1])  # "eng"
        ops = await repo.get(ids[0])  # "ops": not reached by the write
        assert eng is not None
        assert ops is not None
        result = await repo.bulk_update({"department": "eng"}, {"salary": 3})
        assert result.success_count == 8
        assert eng.salary == 3
        assert ops.salary == person(0)["salary"]


async def test_soft_bulk_delete_stamps_held_objects(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    ids = await seed(session_factory)
    config = config_of(any_stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        held = await repo.get(ids[1])
        assert held is not None
        await settle(config)
        result = await repo.bulk_delete({"id": ids[1]})
        assert result.success_count == 1
        assert held.deleted_at is not None
        again = await repo.get(ids[1], include_deleted=True)
        assert again is held
        assert again.deleted_at is not None
        assert await repo.get(ids[1]) is None


async def test_hard_bulk_delete_removes_objects_from_the_session(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    ids = await seed(session_factory)
    config = config_of(any_stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        held = await repo.get_many(ids[:3])
        await settle(config)
        result = await repo.bulk_delete({"id__in": ids[:3]}, soft_delete=False)
        assert result.success_count == 3
        assert all(user not in session for user in held)
        assert await repo.get_many(ids[:3], include_deleted=True) == []
        assert await session.get(User, ids[0]) is None  # SQLAlchemy's own identity-map read
        assert await repo.count() == len(ids) - 3


async def test_single_row_writes_keep_held_objects_true(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    ids = await seed(session_factory)
    config = config_of(any_stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        held = await repo.get(ids[2])
        assert held is not None
        assert await repo.delete(ids[2])
        assert held.deleted_at is not None
        restored = await repo.restore(ids[2])
        assert restored is held
        assert held.deleted_at is None
        updated = await repo.update(ids[2], {"salary": 7})
        assert updated is held
        assert held.salary == 7
        assert await repo.delete(ids[2], soft_delete=False)
        assert await repo.get(ids[2], include_deleted=True) is None


async def test_reads_see_other_sessions_writes_and_never_cache_held_values(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    """A long-lived session's objects predate another process's write: its next read returns
    the new values, and the result it stores in the shared cache is the database's."""
    ids = await seed(session_factory)
    async with session_factory() as long_lived:
        repo: Repo = BaseRepository(User, long_lived, config_of(any_stack))
        held = await repo.list(department="eng")
        await long_lived.commit()  # expire_on_commit=False: the objects keep their values
        async with session_factory() as writer:
            assert await BaseRepository(User, writer, config_of(any_stack)).update(
                ids[1], {"salary": 4242}
            )
        config = repo._shared_cache_config
        await settle(config)
        again = await repo.list(department="eng")
        assert {u.id: u.salary for u in again}[ids[1]] == 4242
        assert any(u.salary == 4242 for u in held)
    await settle(repo._shared_cache_config)
    async with session_factory() as other:
        rows = await BaseRepository(User, other, config_of(any_stack)).list(department="eng")
        assert {u.id: u.salary for u in rows}[ids[1]] == 4242


async def test_unflushed_changes_survive_a_read_without_autoflush(
    session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    ids = await seed(session_factory)
    config = config_of(any_stack)
    async with session_factory() as session:
        session.sync_session.autoflush = False
        repo: Repo = BaseRepository(User, session, config)
        user = await repo.get(ids[0])
        assert user is not None
        user.salary = 31337  # not flushed
        rows = await repo.list(department=user.department)
        assert user in rows
        assert user.salary == 31337  # the read did not throw the edit away
        await session.commit()
    assert await fresh_salary(session_factory, ids[0]) == 31337
    await settle(config)
    async with session_factory() as other:
        got = await BaseRepository(User, other, config_of(any_stack)).get(ids[0])
        assert got is not None
        assert got.salary == 31337


# -- 2. cached reads are the session's objects ---------------------------------------------


async def test_a_hit_returns_the_session_object(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    ids = await seed(session_factory)
    config = patient(stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        first = await repo.get(ids[0])
        await repo.list(id__in=[ids[0]])
        await config.settle()
        with selects_on(engine) as log:
            second = await repo.get(ids[0])
            listed = await repo.list(id__in=[ids[0]])
        assert log.count == 0, "the second read was not a hit"
        assert second is first
        assert listed == [first]

    # A hit in a new session (a request): the object joins the session as persistent, and
    # a change to it is written by the session's commit.
    async with session_factory() as session:
        repo = BaseRepository(User, session, patient(stack))
        with selects_on(engine) as log:
            user = await repo.get(ids[0])
        assert log.count == 0
        assert user is not None
        state = sa_inspect(user)
        assert state.persistent
        assert user in session
        user.salary = 99
        await session.commit()
    assert await fresh_salary(session_factory, ids[0]) == 99
    # ...and that commit, an ORM write, invalidated the cached get.
    async with session_factory() as session:
        got = await BaseRepository(User, session, patient(stack)).get(ids[0])
        assert got is not None
        assert got.salary == 99


class RelBase(AsyncAttrs, DeclarativeBase):
    pass


class Team(RelBase):
    __tablename__ = "coherence_teams"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    members: Mapped[list[Member]] = relationship(back_populates="team")


class Member(RelBase):
    __tablename__ = "coherence_members"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    team_id: Mapped[int] = mapped_column(ForeignKey("coherence_teams.id"))
    team: Mapped[Team] = relationship(back_populates="members")


@pytest.fixture
async def teams(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(RelBase.metadata.drop_all)
        await conn.run_sync(RelBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(RelBase.metadata.drop_all)


async def test_lazy_relationships_load_on_a_hit_as_on_a_miss(
    engine: AsyncEngine, teams: None, stack: Stack
) -> None:
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session:
        team_id = (await BaseRepository(Team, session).create({"name": "core"})).id
        await BaseRepository(Member, session).bulk_create(
            [{"name": f"m{i}", "team_id": team_id} for i in range(3)]
        )
    config = patient(stack)
    loaded = []
    for _ in range(2):  # a miss, then a hit
        async with factory() as session:
            team = await BaseRepository(Team, session, config).get(team_id)
            assert team is not None
            members = await team.awaitable_attrs.members
            loaded.append(sorted(m.name for m in members))
            assert all(m.team is team for m in members)
        await config.settle()
    assert config.stats().hits == 1
    assert loaded == [["m0", "m1", "m2"]] * 2


class EagerTeam(RelBase):
    """``Team``'s table with its members loaded together with each row."""

    __table__ = Team.__table__
    members: Mapped[list[Member]] = relationship(lazy="selectin", viewonly=True)


async def test_a_model_with_eager_relationships_reads_past_the_cache(
    engine: AsyncEngine, teams: None, stack: Stack
) -> None:
    """A cached row holds columns only; a hit would come without the relationship a query
    loads eagerly, so such a model is not cached: every read loads it."""
    factory = async_sessionmaker(engine, expire_on_commit=False)
    async with factory() as session:
        team_id = (await BaseRepository(Team, session).create({"name": "core"})).id
        await BaseRepository(Member, session).bulk_create(
            [{"name": f"m{i}", "team_id": team_id} for i in range(2)]
        )
    config = patient(stack)
    for _ in range(2):
        async with factory() as session:
            team = await BaseRepository(EagerTeam, session, config).get(team_id)
            assert team is not None
            assert sorted(m.name for m in team.__dict__["members"]) == ["m0", "m1"]
        await config.settle()
    assert config.stats().hits == 0


# -- 3. ORM writes through the session invalidate ------------------------------------------


OrmWrite = Callable[[AsyncSession, list[int]], Awaitable[None]]


async def _change_attribute(session: AsyncSession, ids: list[int]) -> None:
    user = await session.get(User, ids[1])
    assert user is not None
    user.department = "moved"


async def _add(session: AsyncSession, ids: list[int]) -> None:
    session.add(User(name="added", email="added@example.com", department="eng"))


async def _delete(session: AsyncSession, ids: list[int]) -> None:
    user = await session.get(User, ids[1])
    await session.delete(user)


async def _orm_update(session: AsyncSession, ids: list[int]) -> None:
    await session.execute(update(User).where(User.id == ids[1]).values(department="moved"))


ORM_WRITES = {
    "attribute": _change_attribute,
    "add": _add,
    "delete": _delete,
    "orm_update": _orm_update,
}


@pytest.mark.parametrize("write", list(ORM_WRITES), ids=list(ORM_WRITES))
async def test_orm_writes_through_the_session_invalidate(
    session_factory: async_sessionmaker[AsyncSession], stack: Stack, write: str
) -> None:
    ids = await seed(session_factory)
    reader = patient(stack)

    async def eng() -> list[int]:
        async with session_factory() as session:
            rows = await BaseRepository(User, session, reader).list(department="eng")
            return sorted(u.id for u in rows)

    before = await eng()
    await reader.settle()
    assert await eng() == before  # cached now
    writer_config = patient(stack)
    async with session_factory() as session:
        BaseRepository(User, session, writer_config)  # the application's repository
        await ORM_WRITES[write](session, ids)
        await session.commit()
    after = await eng()
    async with session_factory() as session:
        truth = sorted(u.id for u in await BaseRepository(User, session).list(department="eng"))
    assert after == truth
    assert after != before
    assert writer_config.stats().invalidations == 1


async def test_orm_writes_rolled_back_do_not_invalidate_and_commit_bumps_once(
    session_factory: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    ids = await seed(session_factory)
    config = patient(stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        user = await repo.get(ids[0])
        assert user is not None
        user.salary = 1
        await session.flush()
        await session.rollback()
        assert config.stats().invalidations == 0
        user = await repo.get(ids[0])
        assert user is not None
        user.salary = 2
        await session.flush()
        user.name = "twice flushed"
        await session.flush()
        session.add(User(name="new", email="new@example.com"))
        await session.commit()
        assert config.stats().invalidations == 1


async def test_reads_after_an_orm_write_in_the_transaction_bypass_the_cache(
    session_factory: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    ids = await seed(session_factory)
    config = patient(stack)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        await repo.count()
        await config.settle()
        session.add(User(name="pending", email="pending@example.com"))
        # The count sees the pending row (autoflush), and does not store it for others.
        assert await repo.count() == len(ids) + 1
        await session.rollback()
    await config.settle()
    async with session_factory() as session:
        assert await BaseRepository(User, session, patient(stack)).count() == len(ids)


# -- 4. post-commit work survives cancellation ---------------------------------------------


class Blocker:
    """An event handler that waits, at a known point, until the test lets it go."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.finished: list[RepositoryEvent] = []

    async def __call__(self, event: RepositoryEvent) -> None:
        self.reached.set()
        await self.release.wait()
        self.finished.append(event)


async def _cancel_when(task: asyncio.Task[Any], reached: asyncio.Event) -> None:
    await asyncio.wait_for(reached.wait(), 5)
    task.cancel()


WRITE_CALLS: dict[str, Callable[[Repo, list[int]], Awaitable[Any]]] = {
    "bulk_update": lambda r, ids: r.bulk_update({"department": "eng"}, {"salary": 5}),
    "update": lambda r, ids: r.update(ids[1], {"salary": 5}),
    "bulk_delete": lambda r, ids: r.bulk_delete({"department": "eng"}),
    "bulk_upsert": lambda r, ids: r.bulk_upsert(
        [person(i, salary=5) for i in range(4)], unique_fields=["email"]
    ),
    "bulk_update_rows": lambda r, ids: r.bulk_update_rows([{"id": k, "salary": 5} for k in ids]),
}


@pytest.mark.parametrize("call", list(WRITE_CALLS), ids=list(WRITE_CALLS))
@pytest.mark.parametrize("point", ["begin_write", "end_write", "event"])
async def test_cancelled_after_commit_still_bumps_and_publishes(
    session_factory: async_sessionmaker[AsyncSession],
    stack: Stack,
    call: str,
    point: str,
) -> None:
    """Cancellation injected at each await around the commit: while the write intent is
    recorded (before COMMIT: the repository's commit is shielded, so it goes ahead), while
    it is ended and the generation bumped (after COMMIT), and while an event handler runs (a
    second handler must run too)."""
    ids = await seed(session_factory)
    reader = patient(stack)
    queries: list[dict[str, Any]] = [{"department": "eng"}, {"id__in": ids}]

    async def read_all() -> list[Any]:
        out = []
        async with session_factory() as session:
            repo: Repo = BaseRepository(User, session, reader)
            for filters in queries:
                out.append(sorted((u.id, u.salary) for u in await repo.list(filters)))
            out.append(await repo.count())
        return out

    before = await read_all()
    await reader.settle()
    config = patient(stack)
    bus = EventBus()
    blocker, after = Blocker(), []
    bus.subscribe(EventType.UPDATED, blocker)
    bus.subscribe(EventType.SOFT_DELETED, blocker)
    for kind in (EventType.UPDATED, EventType.SOFT_DELETED):
        bus.subscribe(kind, lambda event: _record(after, event))
    gate: Gate | None = None
    if point != "event":
        gate = install_gate(config, point)
        gate.arm()
        blocker.release.set()
        reached = gate.reached
    else:
        reached = blocker.reached
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config, event_bus=bus)
        task = asyncio.ensure_future(WRITE_CALLS[call](repo, ids))
        await _cancel_when(task, reached)
        await asyncio.sleep(0.05)
        assert not task.done(), "the post-commit work was abandoned on cancellation"
        if gate is not None:
            gate.open()
        blocker.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The session stays usable after the cancelled call.
        assert await BaseRepository(User, session).count() >= 0
    assert blocker.finished, "the event handler did not run to its end"
    assert after, "the handler after the cancelled one did not run"
    async with session_factory() as session:
        truth_rows = []
        for filters in queries:
            rows = await BaseRepository(User, session).list(filters)
            truth_rows.append(sorted((u.id, u.salary) for u in rows))
        truth_rows.append(await BaseRepository(User, session).count())
    assert await read_all() == truth_rows
    assert truth_rows != before


async def _record(into: list[RepositoryEvent], event: RepositoryEvent) -> None:
    into.append(event)


async def test_cancelled_during_the_callers_commit_still_bumps(
    session_factory: async_sessionmaker[AsyncSession], stack: Stack
) -> None:
    """The caller's own commit (its transaction, an ORM write) cancelled during the bump
    (the end of its write intent, after COMMIT)."""
    ids = await seed(session_factory)
    reader = patient(stack)

    async def salary() -> Any:
        async with session_factory() as session:
            got = await BaseRepository(User, session, reader).get(ids[1])
            assert got is not None
            return got.salary

    assert await salary() == person(1)["salary"]
    await reader.settle()
    config = patient(stack)
    gate = install_gate(config, "end_write")
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        user = await repo.get(ids[1])
        assert user is not None
        user.salary = 777
        gate.arm()
        task = asyncio.ensure_future(session.commit())
        await _cancel_when(task, gate.reached)
        await asyncio.sleep(0.05)
        assert not task.done()
        gate.open()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The commit stands, and the session goes on working.
        assert (await repo.get(ids[1])) is user
    assert await fresh_salary(session_factory, ids[1]) == 777
    assert await salary() == 777


# -- 5. a failed read does not poison the session ------------------------------------------


class GhostBase(DeclarativeBase):
    pass


class Ghost(GhostBase):
    """Mapped on ``users`` with a column the table lacks: every database refuses its reads."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    no_such_column: Mapped[str] = mapped_column(String(10))


async def test_a_failed_read_leaves_the_session_working(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession], any_stack: Stack | None
) -> None:
    """On PostgreSQL a failed statement aborts its transaction; the repository owned it (its
    own read opened it), so it rolls it back and the next read works."""
    await seed(session_factory)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config_of(any_stack))
        ghosts: Repo = BaseRepository(Ghost, session, config_of(any_stack))
        with pytest.raises(RepositoryDatabaseError):
            await ghosts.list()  # the read that opens the transaction fails
        assert await repo.count() == 12
        with pytest.raises(RepositoryDatabaseError):
            await ghosts.get(1)  # a read in a transaction an earlier read opened
        assert len(await repo.list(department="eng")) == 8
        assert await repo.exists(department="eng")


async def test_a_terminated_connection_is_not_handed_to_the_next_session(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no server connection to terminate")
    await seed(session_factory)
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session)
        assert await repo.count() == 12
        await kill_connection(engine, session)
        with pytest.raises(DatabaseUnavailableError):
            await repo.count()
        assert await repo.count() == 12  # the same session, on a new connection
    for _ in range(3):
        async with session_factory() as session:
            assert len(await BaseRepository(User, session).list()) == 12


async def timed_out_at_the_bump(
    work: Awaitable[None], expire: Callable[[asyncio.Timeout], Awaitable[None]]
) -> None:
    """Run ``work`` under ``asyncio.timeout()`` that ``expire`` makes fire when it chooses."""
    async with asyncio.timeout(None) as deadline:
        trigger = asyncio.ensure_future(expire(deadline))
        try:
            await work
        finally:
            await trigger


async def kill_connection(engine: AsyncEngine, session: AsyncSession) -> None:
    """Terminate the session's server connection from another one, as an administrator or a
    failover would."""
    if engine.dialect.name == "postgresql":
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        pid = await session.scalar(text("SELECT CONNECTION_ID()"))
        async with engine.connect() as admin:
            await admin.execute(text(f"KILL {int(pid)}"))


@pytest.mark.parametrize("whose", ["callers_commit", "repository_write"])
async def test_a_timeout_after_commit_is_a_timeout_and_the_bump_lands(
    session_factory: async_sessionmaker[AsyncSession], stack: Stack, whose: str
) -> None:
    """``asyncio.timeout()`` (what web frameworks use for request timeouts) firing during the
    post-commit work: the work completes and the caller sees TimeoutError, not a bare
    cancellation of its whole task."""
    ids = await seed(session_factory)
    reader = patient(stack)

    async def salary() -> Any:
        async with session_factory() as session:
            got = await BaseRepository(User, session, reader).get(ids[1])
            assert got is not None
            return got.salary

    await salary()
    await reader.settle()
    config = patient(stack)
    gate = install_gate(config, "end_write")
    async with session_factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        user = await repo.get(ids[1])
        assert user is not None
        gate.arm()

        async def write() -> None:
            if whose == "callers_commit":
                user.salary = 555
                await session.commit()
            else:
                await repo.update(ids[1], {"salary": 555})

        async def expire_at_the_bump(deadline: asyncio.Timeout) -> None:
            await gate.wait_reached()  # the commit is done; its bump is under way
            deadline.reschedule(asyncio.get_running_loop().time())
            await asyncio.sleep(0.05)
            gate.open()

        with pytest.raises(TimeoutError):
            await timed_out_at_the_bump(write(), expire_at_the_bump)
        assert gate.reached.is_set()
        assert await repo.count() == 12  # the session goes on working
    assert await salary() == 555
