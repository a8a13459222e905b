"""``options=`` on get, get_many and list: SQLAlchemy loader options, on every database, with
the cache off, in process and on Redis.

What the options load must be there after the session has closed (no lazy IO left to do),
and the cache must never answer a read with options (its rows hold columns only) nor keep
what such a read loaded (a ``load_only`` row lacks columns a plain read must have).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    joinedload,
    load_only,
    mapped_column,
    raiseload,
    relationship,
    selectinload,
)
from sqlalchemy.orm.exc import DetachedInstanceError

from baserepo import BaseRepository, CacheConfig
from tests.integration.cache_stack import CacheStack, open_stack

Factory = async_sessionmaker[AsyncSession]


class OptionsBase(DeclarativeBase):
    pass


class Team(OptionsBase):
    __tablename__ = "opt_teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    players: Mapped[list[Player]] = relationship(back_populates="team", order_by="Player.id")


class Player(OptionsBase):
    __tablename__ = "opt_players"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    score: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[int] = mapped_column(ForeignKey("opt_teams.id"))
    team: Mapped[Team] = relationship(back_populates="players")


@pytest.fixture
async def factory(engine: AsyncEngine) -> AsyncIterator[Factory]:
    async with engine.begin() as conn:
        await conn.run_sync(OptionsBase.metadata.drop_all)
        await conn.run_sync(OptionsBase.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(OptionsBase.metadata.drop_all)


@pytest.fixture(params=["none", "memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheConfig | None]:
    if request.param == "none":
        yield None
        return
    stack: CacheStack
    async with open_stack(request.param) as stack:
        yield stack.config(operation_timeout=5.0)


@pytest.fixture
async def team_ids(factory: Factory) -> list[int]:
    async with factory() as session:
        ids = []
        for team in ("red", "blue"):
            created = await BaseRepository(Team, session).create({"name": team})
            ids.append(created.id)
            await BaseRepository(Player, session).bulk_create(
                [{"name": f"{team}{i}", "score": i, "team_id": created.id} for i in range(2)]
            )
        return ids


async def settle(cache: CacheConfig | None) -> None:
    if cache is not None:
        await cache.settle()


def assert_past_the_cache(cache: CacheConfig | None, reads: int) -> None:
    """Every read with options went to the database and stored nothing."""
    if cache is not None:
        stats = cache.stats()
        assert (stats.hits, stats.fills, stats.bypasses) == (0, 0, reads)


async def test_get_with_selectinload_loads_the_relationship_every_time(
    factory: Factory, team_ids: list[int], cache: CacheConfig | None
) -> None:
    loaded = []
    for _ in range(2):  # with a cache, the second read would be a hit if one were allowed
        async with factory() as session:
            repo = BaseRepository(Team, session, cache)
            team = await repo.get(team_ids[0], options=[selectinload(Team.players)])
            assert team is not None
        await settle(cache)
        # The session is closed: only what the options loaded can be read now.
        loaded.append([p.name for p in team.players])
    assert loaded == [["red0", "red1"]] * 2
    assert_past_the_cache(cache, 2)


async def test_a_cached_plain_read_never_answers_a_read_with_options(
    factory: Factory, team_ids: list[int], cache: CacheConfig | None
) -> None:
    async with factory() as session:
        assert await BaseRepository(Team, session, cache).get(team_ids[1]) is not None
    await settle(cache)
    async with factory() as session:
        team = await BaseRepository(Team, session, cache).get(
            team_ids[1], options=[selectinload(Team.players)]
        )
    assert team is not None
    assert [p.name for p in team.players] == ["blue0", "blue1"]
    # ...while the plain read, cached, comes back without them (lazy, the session gone).
    async with factory() as session:
        plain = await BaseRepository(Team, session, cache).get(team_ids[1])
    assert plain is not None
    with pytest.raises(DetachedInstanceError):
        _ = plain.players


async def test_list_and_get_many_with_joinedload(
    factory: Factory, team_ids: list[int], cache: CacheConfig | None
) -> None:
    async with factory() as session:
        repo = BaseRepository(Player, session, cache)
        listed = await repo.list(score=1, order_by="name", options=[joinedload(Player.team)])
        many = await repo.get_many([p.id for p in listed][::-1], options=[joinedload(Player.team)])
    assert [(p.name, p.team.name) for p in listed] == [("blue1", "blue"), ("red1", "red")]
    assert [(p.name, p.team.name) for p in many] == [("red1", "red"), ("blue1", "blue")]
    assert_past_the_cache(cache, 2)


async def test_a_load_only_row_is_never_served_to_a_plain_read(
    factory: Factory, team_ids: list[int], cache: CacheConfig | None
) -> None:
    async with factory() as session:
        partial = await BaseRepository(Player, session, cache).list(
            team_id=team_ids[0], options=[load_only(Player.name)]
        )
    assert [p.name for p in partial] == ["red0", "red1"]
    assert all("score" not in p.__dict__ for p in partial)
    await settle(cache)
    for _ in range(2):  # a miss, then (cache on) a hit: full rows both times
        async with factory() as session:
            full = await BaseRepository(Player, session, cache).list(team_id=team_ids[0])
        await settle(cache)
        assert [(p.name, p.score) for p in full] == [("red0", 0), ("red1", 1)]
    if cache is not None:
        stats = cache.stats()
        assert (stats.bypasses, stats.fills, stats.hits) == (1, 1, 1)


async def test_raiseload_is_honoured(factory: Factory, team_ids: list[int]) -> None:
    async with factory() as session:
        team = await BaseRepository(Team, session).get(
            team_ids[0], options=[raiseload(Team.players)]
        )
        assert team is not None
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = team.players


@pytest.mark.parametrize(
    "options",
    [selectinload(Team.players), ["not an option"], "selectinload"],
    ids=["bare option", "list of strings", "string"],
)
async def test_options_must_be_a_list_of_loader_options(
    factory: Factory, team_ids: list[int], options: Any
) -> None:
    async with factory() as session:
        repo = BaseRepository(Team, session)
        with pytest.raises(TypeError, match="options"):
            await repo.get(team_ids[0], options=options)
        with pytest.raises(TypeError, match="options"):
            await repo.list(options=options)
        with pytest.raises(TypeError, match="options"):
            await repo.get_many(team_ids, options=options)
