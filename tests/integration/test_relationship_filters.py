"""Filters across many-to-one relationships (``team__name="core"``), on every database.

Each key becomes an ``EXISTS`` on the related table, so a member is never listed twice; its
value is checked against the related column; the related model's soft delete is not applied
by itself. With a cache on, a relationship filter reads the database every time: a write to
the related table does not move the filtered model's generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from baserepo import BaseRepository, CacheConfig, InvalidFilterError, Q
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.models import Timestamp

Factory = async_sessionmaker[AsyncSession]


class RelBase(DeclarativeBase):
    pass


class Org(RelBase):
    __tablename__ = "relf_orgs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))


class Team(RelBase):
    __tablename__ = "relf_teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer, default=0)
    org_id: Mapped[int | None] = mapped_column(ForeignKey("relf_orgs.id"))
    org: Mapped[Org | None] = relationship()
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    members: Mapped[list[Member]] = relationship(back_populates="team")


class Member(RelBase):
    __tablename__ = "relf_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("relf_teams.id"))
    team: Mapped[Team | None] = relationship(back_populates="members")
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


@pytest.fixture
async def factory(engine: AsyncEngine) -> AsyncIterator[Factory]:
    async with engine.begin() as conn:
        await conn.run_sync(RelBase.metadata.drop_all)
        await conn.run_sync(RelBase.metadata.create_all)
    made = async_sessionmaker(engine, expire_on_commit=False)
    async with made() as session, session.begin():
        acme = Org(name="Acme")
        core = Team(name="core", size=3, org=acme)
        web = Team(name="Web", size=2)
        gone = Team(name="gone", size=1, deleted_at=datetime(2024, 1, 1))
        session.add_all([acme, core, web, gone])
        session.add_all(
            [
                Member(name="ann", team=core),
                Member(name="ben", team=core),
                Member(name="cid", team=web),
                Member(name="dee", team=gone),
                Member(name="eve", team=None),
                Member(name="fay", team=core, deleted_at=datetime(2024, 1, 1)),
            ]
        )
    yield made
    async with engine.begin() as conn:
        await conn.run_sync(RelBase.metadata.drop_all)


def names(rows: list[Member]) -> list[str]:
    return sorted(row.name for row in rows)


CASES: dict[str, tuple[dict[str, object], list[str]]] = {
    "exact": ({"team__name": "core"}, ["ann", "ben"]),
    "icontains": ({"team__name__icontains": "EB"}, ["cid"]),
    "case-sensitive startswith": ({"team__name__startswith": "w"}, []),
    "in": ({"team__name__in": ["core", "Web"]}, ["ann", "ben", "cid"]),
    "typed number from text": ({"team__size__gte": "2"}, ["ann", "ben", "cid"]),
    "with an own filter": ({"team__name": "core", "name__ne": "ann"}, ["ben"]),
    "two hops": ({"team__org__name": "Acme"}, ["ann", "ben"]),
    "deleted team, not hidden implicitly": ({"team__name": "gone"}, ["dee"]),
    "only live teams": ({"team__deleted_at__isnull": True}, ["ann", "ben", "cid"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_relationship_filter_selects_by_the_related_row(
    case: str, factory: Factory
) -> None:
    filters, expected = CASES[case]
    async with factory() as session:
        repo = BaseRepository(Member, session)
        assert names(await repo.list(filters)) == expected
        assert await repo.count(filters) == len(expected)
        assert await repo.exists(filters) is bool(expected)


async def test_own_soft_delete_still_applies_and_include_deleted_lifts_it(
    factory: Factory,
) -> None:
    async with factory() as session:
        repo = BaseRepository(Member, session)
        # team__deleted_at is the team's column: it does not ask about deleted members.
        assert names(await repo.list(team__name="core", team__deleted_at__isnull=True)) == [
            "ann",
            "ben",
        ]
        assert names(await repo.list(team__name="core", include_deleted=True)) == [
            "ann",
            "ben",
            "fay",
        ]


BAD: dict[str, tuple[dict[str, object], str]] = {
    "bad value for the related column": ({"team__size__gte": "abc"}, "team__size__gte"),
    "unknown related field": ({"team__nme": "core"}, "Team has no field 'nme'"),
    "unknown relationship": ({"tem__name": "core"}, "Member has no field 'tem__name'"),
    "unknown lookup": ({"team__name__sorta": "core"}, "unknown lookup 'sorta'"),
    "text lookup on a number": ({"team__size__contains": "1"}, "team__size__contains"),
}


@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_relationship_filter_names_the_key(case: str, factory: Factory) -> None:
    filters, named = BAD[case]
    async with factory() as session:
        repo = BaseRepository(Member, session)
        with pytest.raises(InvalidFilterError, match=named):
            await repo.list(filters)
        with pytest.raises(InvalidFilterError, match=named):
            await repo.bulk_delete(filters, soft_delete=False)


async def test_a_collection_is_refused(factory: Factory) -> None:
    async with factory() as session:
        with pytest.raises(InvalidFilterError, match="many-to-one relationships only"):
            await BaseRepository(Team, session).list(members__name="ann")


async def test_bulk_update_and_delete_take_relationship_filters(factory: Factory) -> None:
    async with factory() as session:
        repo = BaseRepository(Member, session)
        updated = await repo.bulk_update({"team__name": "core"}, {"name": "core-member"})
        assert updated.success_count == 2
        deleted = await repo.bulk_delete({"team__name__iexact": "web"}, soft_delete=False)
        assert deleted.success_count == 1
    async with factory() as session:
        left = (await session.scalars(select(Member.name))).all()
        assert sorted(left) == ["core-member", "core-member", "dee", "eve", "fay"]


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def _rename_through_repository(session: AsyncSession, config: CacheConfig) -> None:
    team = (await session.scalars(select(Team).where(Team.name == "core"))).one()
    await BaseRepository(Team, session, config).update(team.id, {"name": "platform"})


async def _rename_through_session(session: AsyncSession, config: CacheConfig) -> None:
    team = (await session.scalars(select(Team).where(Team.name == "core"))).one()
    team.name = "platform"
    await session.commit()


@pytest.mark.parametrize("rename", [_rename_through_repository, _rename_through_session])
async def test_renaming_the_related_row_changes_the_cached_read(
    rename: object, factory: Factory, stack: CacheStack
) -> None:
    config = stack.config(operation_timeout=5.0)
    for _ in range(2):  # a second read could be a hit if such reads were stored
        async with factory() as session:
            # An own filter is cached (the first read of its session: it may fill).
            assert names(await BaseRepository(Member, session, config).list(name="ann")) == ["ann"]
        async with factory() as session:
            repo = BaseRepository(Member, session, config)
            assert names(await repo.list(team__name="core")) == ["ann", "ben"]
            assert await repo.count(team__name="core") == 2
            assert names(await repo.list(Q(team__name="core") | Q(name="eve"))) == [
                "ann",
                "ben",
                "eve",
            ]
        await config.settle()
    async with factory() as session:
        await rename(session, config)  # type: ignore[operator]
    async with factory() as session:
        repo = BaseRepository(Member, session, config)
        assert names(await repo.list(team__name="core")) == []
        assert await repo.count(team__name="core") == 0
        assert names(await repo.list(team__name="platform")) == ["ann", "ben"]
        assert names(await repo.list(Q(team__name="core") | Q(name="eve"))) == ["eve"]
    stats = config.stats("relf_members")
    assert stats.hits == 1
    assert stats.bypasses >= 8
