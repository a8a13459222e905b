"""baserepo.testing.RecordingEventBus records what repositories publish, after commit only."""

from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, EventType
from baserepo.testing import RecordingEventBus
from tests.models import Article, User


async def test_recording_bus_keeps_committed_events_in_order(session: AsyncSession) -> None:
    bus = RecordingEventBus()
    users = BaseRepository(User, session, event_bus=bus)
    articles = BaseRepository(Article, session, event_bus=bus)
    result = await users.bulk_create([{"name": f"u{i}"} for i in range(5)], batch_size=2)
    await articles.create({"title": "t"})
    await users.delete(result.created_ids[0])

    assert bus.ids(EventType.CREATED, User) == result.created_ids
    assert [len(e.ids) for e in bus.of("created", User)] == [2, 2, 1]  # one event per batch
    assert len(bus.of(EventType.CREATED)) == 4  # the article's too
    assert bus.ids(EventType.SOFT_DELETED) == [result.created_ids[0]]


async def test_recording_bus_sees_nothing_from_rolled_back_work(session: AsyncSession) -> None:
    bus = RecordingEventBus()
    users = BaseRepository(User, session, event_bus=bus)
    try:
        async with session.begin():
            await users.bulk_create([{"name": "a"}, {"name": "b"}])
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert bus.events == []
    await users.create({"name": "c"})
    assert len(bus.of(EventType.CREATED)) == 1
    bus.clear_events()
    assert bus.events == []
