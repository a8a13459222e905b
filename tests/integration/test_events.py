"""Events on every database: delivered after the commit that made them true, and only then.

Each test passes its own ``EventBus`` so nothing leaks between tests. Handlers that need to know
whether an event is already committed look from a brand-new session, which sees only committed
rows.
"""

import logging
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, EventBus, EventType, RepositoryEvent
from tests.models import Article, User


class Rollback(Exception):
    """Raised in a test to make the caller's block roll back."""


class Recorder:
    """An async handler that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[RepositoryEvent] = []

    async def __call__(self, event: RepositoryEvent) -> None:
        self.events.append(event)

    @property
    def ids(self) -> list[tuple[Any, ...]]:
        return [e.ids for e in self.events]

    @property
    def kinds(self) -> list[EventType]:
        return [e.type for e in self.events]


class CommittedChecker(Recorder):
    """Records, for each event, how many of its rows another connection could see."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        super().__init__()
        self.factory = factory
        self.visible: list[int] = []

    async def __call__(self, event: RepositoryEvent) -> None:
        await super().__call__(event)
        async with self.factory() as fresh:
            query = select(func.count()).select_from(User).where(User.id.in_(event.ids))
            self.visible.append(int(await fresh.scalar(query) or 0))


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"user {i}", "email": f"user{i}@example.com", **extra}


def every_type(bus: EventBus, handler: Any) -> None:
    for kind in EventType:
        bus.subscribe(kind, handler)


# -- the bus -----------------------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_per_type_and_model(session: AsyncSession) -> None:
    bus = EventBus()
    user_created, any_created, user_updated = Recorder(), Recorder(), Recorder()
    bus.subscribe(EventType.CREATED, user_created, model=User)
    bus.subscribe("created", any_created)
    bus.subscribe("created", any_created)  # twice is once
    bus.subscribe(EventType.UPDATED, user_updated, model=User)
    users = BaseRepository(User, session, event_bus=bus)
    articles = BaseRepository(Article, session, event_bus=bus)

    ada = await users.create(user(1))
    await articles.create({"title": "t"})
    await users.update(ada.id, {"name": "Ada"})

    assert [e.model for e in user_created.events] == [User]
    assert [e.model for e in any_created.events] == [User, Article]
    assert [(e.type, e.ids) for e in user_updated.events] == [(EventType.UPDATED, (ada.id,))]

    bus.unsubscribe(EventType.CREATED, user_created, model=User)
    bus.unsubscribe(EventType.CREATED, any_created, model=User)  # not how it was subscribed
    bus.unsubscribe(EventType.DELETED, Recorder())  # unknown handlers are ignored
    await users.create(user(2))

    assert len(user_created.events) == 1
    assert [e.model for e in any_created.events] == [User, Article, User]


async def test_event_carries_type_model_ids_and_data(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    created = await repo.create(user(1, salary=10))
    await repo.update(created.id, {"salary": 20})
    await repo.delete(created.id)
    await repo.restore(created.id)
    await repo.delete(created.id, soft_delete=False)

    assert seen.kinds == [
        EventType.CREATED,
        EventType.UPDATED,
        EventType.SOFT_DELETED,
        EventType.RESTORED,
        EventType.DELETED,
    ]
    assert all(e.model is User and e.ids == (created.id,) for e in seen.events)
    assert all(not e.bulk for e in seen.events)
    assert seen.events[0].data[0]["email"] == "user1@example.com"
    assert seen.events[0].data[0]["salary"] == 10
    assert seen.events[1].data == ({"salary": 20},)


async def test_writes_that_change_nothing_emit_nothing(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)
    kept = await repo.create(user(1))
    seen.events.clear()

    assert await repo.update(10_000, {"name": "x"}) is None
    assert await repo.delete(10_000) is False
    assert await repo.restore(kept.id) is None  # not deleted
    result = await repo.bulk_update({"department": "none"}, {"status": "x"})
    assert result.success_count == 0

    assert seen.events == []


# -- after commit, and only after commit -------------------------------------------------------


async def test_repo_owned_events_arrive_committed_before_the_call_returns(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    bus = EventBus()
    seen = CommittedChecker(session_factory)
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    result = await repo.bulk_create([user(i) for i in range(7)], batch_size=3)
    assert seen.ids == [
        tuple(result.created_ids[0:3]),
        tuple(result.created_ids[3:6]),
        tuple(result.created_ids[6:7]),
    ]
    single = await repo.create(user(10))
    assert seen.ids[-1] == (single.id,)
    updated = await repo.bulk_update({"email__endswith": "@example.com"}, {"status": "x"})
    assert seen.events[-1].type is EventType.UPDATED
    assert seen.ids[-1] == tuple(updated.affected_ids)

    # Every event was handled with its rows already visible to other connections.
    assert seen.visible == [3, 3, 1, 1, 8]


async def test_callers_transaction_delivers_on_its_commit(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    bus = EventBus()
    seen = CommittedChecker(session_factory)
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    async with session.begin():
        created = await repo.bulk_create([user(i) for i in range(4)], batch_size=2)
        single = await repo.create(user(9))
        await repo.bulk_delete({"email": user(0)["email"]})
        assert seen.events == [], "delivered before the caller committed"

    assert seen.kinds == [
        EventType.CREATED,
        EventType.CREATED,
        EventType.CREATED,
        EventType.SOFT_DELETED,
    ]
    assert seen.ids == [
        tuple(created.created_ids[:2]),
        tuple(created.created_ids[2:]),
        (single.id,),
        (created.created_ids[0],),
    ]
    assert seen.visible == [2, 2, 1, 1]


async def test_callers_commit_delivers_only_the_batches_that_landed(
    session: AsyncSession,
) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)
    records = [user(i) for i in range(6)]
    records[3] = user(3, email=user(2)["email"])  # sinks batch [2, 3]

    await session.begin()
    result = await repo.bulk_create(records, batch_size=2)
    assert result.success_count == 4
    assert seen.events == []
    await session.commit()

    assert seen.ids == [tuple(result.created_ids[:2]), tuple(result.created_ids[2:])]
    assert [[row["email"] for row in e.data] for e in seen.events] == [
        [user(0)["email"], user(1)["email"]],
        [user(4)["email"], user(5)["email"]],
    ]


async def test_rolled_back_caller_transaction_emits_nothing_ever(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    async def rolled_back() -> None:
        async with session.begin():
            await repo.bulk_create([user(i) for i in range(4)], batch_size=2)
            await repo.bulk_update({}, {"status": "x"}, all_rows=True)
            raise Rollback

    with pytest.raises(Rollback):
        await rolled_back()
    assert seen.events == []

    # The dropped events do not resurface with the next commit on the same session.
    kept = await repo.create(user(10))
    assert seen.ids == [(kept.id,)]


async def test_savepoint_rolled_back_by_the_caller_drops_its_events(
    session: AsyncSession,
) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    async with session.begin():
        first = (await repo.create(user(1))).id
        nested = await session.begin_nested()
        await repo.bulk_create([user(2), user(3)])
        await repo.update(first, {"status": "changed in the savepoint"})
        await nested.rollback()
        async with session.begin_nested():
            released = (await repo.create(user(4))).id
        assert seen.events == [], "a released SAVEPOINT is not a commit"

    assert seen.ids == [(first,), (released,)]
    assert seen.kinds == [EventType.CREATED, EventType.CREATED]
    assert await repo.count() == 2


async def test_failing_handler_is_logged_and_the_write_stands(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, after = EventBus(), Recorder()

    async def broken(event: RepositoryEvent) -> None:
        raise RuntimeError("handler exploded")

    bus.subscribe(EventType.CREATED, broken, model=User)
    bus.subscribe(EventType.CREATED, after)
    repo = BaseRepository(User, session, event_bus=bus)

    with caplog.at_level(logging.ERROR, logger="baserepo"):
        created = await repo.create(user(1))
        async with session.begin():
            result = await repo.bulk_create([user(2), user(3)])

    failures = [
        r for r in caplog.records if r.exc_info and "handler exploded" in str(r.exc_info[1])
    ]
    assert len(failures) == 2
    assert all(r.name.startswith("baserepo") for r in failures)
    assert after.ids == [(created.id,), tuple(result.created_ids)]  # the others still ran
    async with session_factory() as fresh:
        assert await fresh.scalar(select(func.count()).select_from(User)) == 3


# -- bulk calls --------------------------------------------------------------------------------


async def test_one_event_per_committed_batch(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)
    records = [user(i) for i in range(8)]
    records[4] = user(4, email=user(3)["email"])  # sinks batch [3, 4, 5]

    result = await repo.bulk_create(records, batch_size=3)

    assert result.success_count == 5
    assert seen.ids == [tuple(result.created_ids[:3]), tuple(result.created_ids[3:])]
    for event in seen.events:
        assert event.bulk
        assert event.type is EventType.CREATED
        assert event.model is User
        by_id = {u.id: u.email for u in await repo.get_many(event.ids)}
        assert [row["email"] for row in event.data] == [by_id[i] for i in event.ids]

    seen.events.clear()
    updated = await repo.bulk_update({}, {"role": "r"}, batch_size=2, all_rows=True)
    assert seen.ids == [tuple(updated.affected_ids[i : i + 2]) for i in range(0, 5, 2)]
    assert all(e.data == ({"role": "r"},) for e in seen.events)

    seen.events.clear()
    soft = await repo.bulk_delete({"email__in": [user(0)["email"], user(1)["email"]]})
    hard = await repo.bulk_delete({}, soft_delete=False, batch_size=4, all_rows=True)
    assert seen.kinds == [EventType.SOFT_DELETED, EventType.DELETED]
    assert seen.ids == [tuple(soft.affected_ids), tuple(hard.affected_ids)]
    assert len(hard.affected_ids) == 3  # the soft-deleted two are left alone


async def test_ignored_conflicts_are_not_in_the_event(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    bus.subscribe(EventType.CREATED, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    result = await repo.bulk_create([user(1), user(1, name="dup"), user(2)], ignore_conflicts=True)

    assert seen.ids == [tuple(result.created_ids)]
    assert [row["name"] for row in seen.events[0].data] == ["user 1", "user 2"]


async def test_emit_events_false_emits_nothing(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(User, session, event_bus=bus)

    created = await repo.bulk_create([user(i) for i in range(5)], batch_size=2, emit_events=False)
    updated = await repo.bulk_update({}, {"status": "x"}, emit_events=False, all_rows=True)
    soft = await repo.bulk_delete({"email": user(0)["email"]}, emit_events=False)
    hard = await repo.bulk_delete(
        {}, soft_delete=False, batch_size=2, emit_events=False, all_rows=True
    )

    assert (created.success_count, updated.success_count) == (5, 5)
    assert (soft.success_count, hard.success_count) == (1, 4)
    assert seen.events == []


async def test_article_events_are_hard_deletes(session: AsyncSession) -> None:
    bus, seen = EventBus(), Recorder()
    every_type(bus, seen)
    repo = BaseRepository(Article, session, event_bus=bus)

    created = await repo.bulk_create([{"title": "a"}, {"title": "b"}, {"title": "c"}])
    assert await repo.delete(created.created_ids[0]) is True
    await repo.bulk_delete({"title__in": ["b", "c"]})

    assert seen.kinds == [EventType.CREATED, EventType.DELETED, EventType.DELETED]
    assert {e.model for e in seen.events} == {Article}
    assert seen.ids[1:] == [(created.created_ids[0],), tuple(created.created_ids[1:])]
