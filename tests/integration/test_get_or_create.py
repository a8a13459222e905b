"""get_or_create and update_or_create on every database: found or created, a lost race ends
with the winner's row (never an error), soft-deleted rows, the caller's transaction, the cache.

Races are made deterministic: every racer has looked the row up (and found nothing) before any
of them may flush its INSERT (a barrier in ``before_flush``), each on a session and connection
of its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import await_only

from baserepo import (
    BaseRepository,
    CacheConfig,
    EventType,
    IntegrityConflictError,
    MultipleRowsError,
    RecordValidationError,
)
from baserepo.testing import RecordingEventBus
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.integration.get_or_create_worker import Seat, SeatBase
from tests.models import User, UserCreate, UserUpdate

Factory = async_sessionmaker[AsyncSession]
RACERS = 6
BARRIER_SECONDS = 20.0


@pytest.fixture
async def seats(engine: AsyncEngine, tables: None) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(SeatBase.metadata.drop_all)
        await conn.run_sync(SeatBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(SeatBase.metadata.drop_all)


async def stored(factory: Factory, model: type[Any], **where: Any) -> list[Any]:
    """Rows as a brand-new session reads them: what was committed."""
    async with factory() as session:
        query = select(model).filter_by(**where).order_by(model.id)
        return list((await session.execute(query)).scalars())


def users(session: AsyncSession, **kwargs: Any) -> BaseRepository[User, UserCreate, UserUpdate]:
    return BaseRepository[User, UserCreate, UserUpdate](User, session, **kwargs)


# -- found or created ------------------------------------------------------------------------


async def test_get_or_create_creates_once_then_finds(session_factory: Factory) -> None:
    bus = RecordingEventBus()
    async with session_factory() as session:
        repo = users(session, event_bus=bus)
        first, created = await repo.get_or_create({"name": "Ada"}, email="ada@example.com")
        assert created is True
        assert (first.name, first.email) == ("Ada", "ada@example.com")
        # Defaults only fill a new row: the found one keeps its name.
        again, created_again = await repo.get_or_create({"name": "Other"}, email="ada@example.com")
    assert created_again is False
    assert again.id == first.id
    assert again.name == "Ada"
    rows = await stored(session_factory, User)
    assert [(r.id, r.name) for r in rows] == [(first.id, "Ada")]
    assert bus.ids(EventType.CREATED) == [first.id]


async def test_only_exact_filters_go_into_the_new_row(session_factory: Factory) -> None:
    async with session_factory() as session:
        row, created = await users(session).get_or_create(
            {"name": "Bo"}, email="bo@example.com", salary__gte=10
        )
    assert created is True
    assert row.salary is None  # the lookup narrowed the search; it wrote nothing
    assert [r.email for r in await stored(session_factory, User)] == ["bo@example.com"]


async def test_more_than_one_match_is_refused(session_factory: Factory) -> None:
    async with session_factory() as session:
        repo = users(session)
        await repo.create({"name": "A", "department": "eng"})
        await repo.create({"name": "B", "department": "eng"})
        with pytest.raises(MultipleRowsError, match="more than one User"):
            await repo.get_or_create({"name": "C"}, department="eng")
        with pytest.raises(MultipleRowsError):
            await repo.update_or_create({"name": "C"}, department="eng")
    assert len(await stored(session_factory, User)) == 2


async def test_a_new_row_is_validated_as_create_validates(session_factory: Factory) -> None:
    async with session_factory() as session:
        with pytest.raises(RecordValidationError, match="name"):
            await users(session).get_or_create(email="nameless@example.com")
        with pytest.raises(RecordValidationError, match="salary"):
            await users(session).update_or_create({"salary": "lots"}, email="x@example.com")
    assert await stored(session_factory, User) == []


async def test_update_or_create_creates_then_updates(session_factory: Factory) -> None:
    bus = RecordingEventBus()
    async with session_factory() as session:
        repo = users(session, event_bus=bus)
        row, created = await repo.update_or_create(
            {"name": "Cy", "salary": 1}, email="cy@example.com"
        )
        assert created is True
        again, created_again = await repo.update_or_create({"salary": 2}, email="cy@example.com")
        assert (created_again, again.id, again.salary, again.name) == (False, row.id, 2, "Cy")
    rows = await stored(session_factory, User)
    assert [(r.id, r.salary) for r in rows] == [(row.id, 2)]
    assert bus.ids(EventType.CREATED) == [row.id]
    assert bus.ids(EventType.UPDATED) == [row.id]


# -- soft-deleted rows -----------------------------------------------------------------------


async def test_a_soft_deleted_row_is_absent(session_factory: Factory) -> None:
    """No unique key covers ``department``: a new row is created beside the deleted one."""
    async with session_factory() as session:
        repo = users(session)
        old = await repo.create({"name": "Gone", "department": "legal"})
        assert await repo.delete(old.id)
        row, created = await repo.get_or_create({"name": "New"}, department="legal")
        assert created is True
        assert row.id != old.id
        # ...and include_deleted=True finds the deleted row.
        found, created = await repo.get_or_create(
            {"name": "X"}, include_deleted=True, department="legal", name="Gone"
        )
        assert (found.id, created) == (old.id, False)


async def test_a_soft_deleted_row_holding_the_unique_key_raises(
    session_factory: Factory, seats: None
) -> None:
    async with session_factory() as session:
        repo = BaseRepository(Seat, session)
        seat = await repo.create({"venue": "hall", "number": 1})
        assert await repo.delete(seat.id)
        with pytest.raises(IntegrityConflictError) as raised:
            await repo.get_or_create(venue="hall", number=1)
        assert raised.value.is_unique_violation
        with pytest.raises(IntegrityConflictError):
            await repo.update_or_create({"holder": "x"}, venue="hall", number=1)
        found, created = await repo.get_or_create(include_deleted=True, venue="hall", number=1)
        assert (found.id, created) == (seat.id, False)
        updated, created = await repo.update_or_create(
            {"holder": "kept"}, include_deleted=True, venue="hall", number=1
        )
        assert (updated.id, updated.holder, created) == (seat.id, "kept", False)
    assert len(await stored(session_factory, Seat)) == 1


# -- races -----------------------------------------------------------------------------------


def hold_first_flush(session: AsyncSession, barrier: asyncio.Barrier) -> None:
    """The session's first flush waits until every racer has reached its own."""
    waited = False

    def wait(sync_session: Any, *_: Any) -> None:
        nonlocal waited
        if not waited:
            waited = True
            # Flushes run in the session's greenlet: await_only may wait on the event loop.
            await_only(asyncio.wait_for(barrier.wait(), BARRIER_SECONDS))

    event.listen(session.sync_session, "before_flush", wait)


Call = Callable[[BaseRepository[Any, Any, Any], int], Awaitable[tuple[Any, bool]]]


async def race(
    factory: Factory, model: type[Any], call: Call, config: CacheConfig | None = None
) -> list[tuple[Any, bool]]:
    """Every racer first loads the rows already there and holds them: a lost race must not
    unload them (a whole rolled-back transaction would expire every object of the session)."""
    barrier = asyncio.Barrier(RACERS)

    async def racer(index: int) -> tuple[Any, bool]:
        async with factory() as session:
            held = await BaseRepository(model, session).list()
            hold_first_flush(session, barrier)
            row, created = await call(BaseRepository(model, session, config), index)
        # The session is closed: anything expired meanwhile raises DetachedInstanceError.
        assert held
        assert all(h.id is not None for h in held)
        return row.id, created

    return await asyncio.gather(*(racer(i) for i in range(RACERS)))


async def seed_seat(factory: Factory) -> None:
    async with factory() as session:
        await BaseRepository(Seat, session).create({"venue": "lobby", "number": 0})


async def test_racing_get_or_create_makes_one_row(session_factory: Factory, seats: None) -> None:
    async def call(repo: BaseRepository[Any, Any, Any], index: int) -> tuple[Any, bool]:
        return await repo.get_or_create({"holder": f"r{index}"}, venue="hall", number=7)

    await seed_seat(session_factory)
    results = await race(session_factory, Seat, call)
    rows = await stored(session_factory, Seat, venue="hall")
    assert len(rows) == 1
    assert {row_id for row_id, _ in results} == {rows[0].id}
    assert sum(created for _, created in results) == 1


async def test_racing_get_or_create_on_a_single_unique_column(session_factory: Factory) -> None:
    async def call(repo: BaseRepository[Any, Any, Any], index: int) -> tuple[Any, bool]:
        return await repo.get_or_create({"name": f"r{index}"}, email="race@example.com")

    async with session_factory() as session:
        await users(session).create({"name": "first"})
    results = await race(session_factory, User, call)
    rows = await stored(session_factory, User, email="race@example.com")
    assert len(rows) == 1
    assert {row_id for row_id, _ in results} == {rows[0].id}
    assert sum(created for _, created in results) == 1


async def test_racing_update_or_create_creates_once_and_applies_every_update(
    session_factory: Factory, seats: None
) -> None:
    holders = [f"r{i}" for i in range(RACERS)]

    async def call(repo: BaseRepository[Any, Any, Any], index: int) -> tuple[Any, bool]:
        return await repo.update_or_create({"holder": holders[index]}, venue="hall", number=3)

    bus = RecordingEventBus()

    async def with_bus(repo: BaseRepository[Any, Any, Any], index: int) -> tuple[Any, bool]:
        return await call(BaseRepository(Seat, repo.session, event_bus=bus), index)

    await seed_seat(session_factory)
    results = await race(session_factory, Seat, with_bus)
    rows = await stored(session_factory, Seat, venue="hall")
    assert len(rows) == 1
    assert sum(created for _, created in results) == 1
    assert {row_id for row_id, _ in results} == {rows[0].id}
    # Every loser updated the winner's row, one after the other.
    assert len(bus.ids(EventType.UPDATED)) == RACERS - 1
    assert rows[0].holder in holders


PROJECT = Path(__file__).resolve().parents[2]
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
PROCESSES = 4
ROUNDS = 8
WORKER_TIMEOUT_SECONDS = 240


async def test_processes_racing_on_one_key_make_one_row_each(
    session_factory: Factory, seats: None, db_url: str
) -> None:
    """Separate interpreters, as a fleet of application processes: for each key, one row, one
    ``created=True``, and no process gets an error."""
    # Far enough ahead that every interpreter has started (and imported) by then.
    start_at = time.time() + 8.0

    async def one(process: int) -> dict[str, Any]:
        args = {"url": db_url, "process": process, "rounds": ROUNDS, "start_at": start_at}
        child = await asyncio.create_subprocess_exec(
            str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable),
            "-m",
            "tests.integration.get_or_create_worker",
            json.dumps(args),
            cwd=PROJECT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), WORKER_TIMEOUT_SECONDS)
        assert child.returncode == 0, err.decode()[-2000:]
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return report

    reports = await asyncio.gather(*(one(p) for p in range(PROCESSES)))
    assert [r["errors"] for r in reports] == [[]] * PROCESSES
    rows = await stored(session_factory, Seat)
    by_key = {(s.venue, s.number): s.id for s in rows}
    assert len(rows) == 2 * ROUNDS
    for round_ in range(ROUNDS):
        outcomes = [res for r in reports for res in r["results"] if res[0] == round_]
        assert len(outcomes) == PROCESSES
        assert {o[1] for o in outcomes} == {by_key[("proc", round_)]}
        assert {o[3] for o in outcomes} == {by_key[("upd", round_)]}
        assert sum(o[2] for o in outcomes) == 1, outcomes
        assert sum(o[4] for o in outcomes) == 1, outcomes
    # How many races were really lost is up to the scheduler; shown with -s, not asserted.
    print(f"unique violations met: {sum(r['conflicts'] for r in reports)}")


# -- the caller's transaction ----------------------------------------------------------------


async def test_a_conflict_inside_the_callers_transaction_keeps_it_usable(
    session_factory: Factory, seats: None
) -> None:
    """The refused INSERT is rolled back to its SAVEPOINT; the rest of the transaction stays."""
    async with session_factory() as session:
        repo = BaseRepository(Seat, session)
        seat = await repo.create({"venue": "hall", "number": 1})
        assert await repo.delete(seat.id)
        async with session.begin():
            kept = await repo.create({"venue": "hall", "number": 2})
            with pytest.raises(IntegrityConflictError):
                await repo.get_or_create(venue="hall", number=1)
            row, created = await repo.get_or_create(venue="hall", number=3)
            assert created is True
    assert [s.number for s in await stored(session_factory, Seat)] == [1, 2, 3]
    assert kept.number == 2
    assert row.number == 3


async def test_a_race_lost_inside_the_callers_transaction_returns_the_winner(
    session_factory: Factory, seats: None, engine: AsyncEngine
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite has one writer: another connection cannot commit while this "
            "transaction reads, so this race cannot happen there"
        )
    async with session_factory() as session:
        repo = BaseRepository(Seat, session)
        winner_id: list[int] = []

        async def insert_winner() -> None:
            async with session_factory() as other:
                winner = await BaseRepository(Seat, other).create(
                    {"venue": "hall", "number": 5, "holder": "winner"}
                )
                winner_id.append(winner.id)

        def commit_a_winner_first(*_: Any) -> None:
            if not winner_id:
                await_only(insert_winner())

        async with session.begin():
            await repo.create({"venue": "hall", "number": 4})
            event.listen(session.sync_session, "before_flush", commit_a_winner_first)
            row, created = await repo.get_or_create({"holder": "loser"}, venue="hall", number=5)
            event.remove(session.sync_session, "before_flush", commit_a_winner_first)
            assert (row.id, row.holder, created) == (winner_id[0], "winner", False)
            updated, created = await repo.update_or_create(
                {"holder": "updated"}, venue="hall", number=5
            )
            assert (updated.id, created) == (winner_id[0], False)
    rows = await stored(session_factory, Seat)
    assert [(s.number, s.holder) for s in rows] == [(4, None), (5, "updated")]


# -- the cache -------------------------------------------------------------------------------


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def test_cached_reads_see_what_get_or_create_and_update_or_create_wrote(
    session_factory: Factory, stack: CacheStack
) -> None:
    config = stack.config(operation_timeout=5.0)
    async with session_factory() as session:
        repo = users(session, cache_config=config)
        assert await repo.list(email="dee@example.com") == []  # cached: empty
        row, created = await repo.get_or_create({"name": "Dee"}, email="dee@example.com")
        assert created is True
        assert await repo.get(row.id) is not None  # cached: the row
        await config.settle()
    async with session_factory() as session:
        repo = users(session, cache_config=config)
        assert [r.id for r in await repo.list(email="dee@example.com")] == [row.id]
        updated, created = await repo.update_or_create({"salary": 5}, email="dee@example.com")
        assert (updated.id, created) == (row.id, False)
    for _ in range(2):  # a miss (the update invalidated), then a hit of the new row
        async with session_factory() as session:
            fresh = await users(session, cache_config=config).get(row.id)
            assert fresh is not None
            assert fresh.salary == 5
        await config.settle()
    stats = config.stats()
    assert (stats.invalidations, stats.hits) == (2, 1)
    async with session_factory() as session:
        count = await session.scalar(select(func.count()).select_from(User))
    assert count == 1
