"""A rolling deploy: processes running two versions of a model share one Redis.

Cached rows are stored positionally (column values in mapping order), so a process whose model
has other columns, or the same columns in another order, must never decode the other
version's entries; a write through either version must still retire both versions' entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Integer, String
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository
from tests.integration.cache_stack import CacheStack, open_stack

Factory = async_sessionmaker[AsyncSession]


class OldBase(DeclarativeBase):
    pass


class NewBase(DeclarativeBase):
    pass


class OldMember(OldBase):
    """The release being replaced: no ``age`` column yet."""

    __tablename__ = "deploy_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(80))


class NewMember(NewBase):
    """The new release: ``age`` added between ``name`` and ``email``."""

    __tablename__ = "deploy_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    age: Mapped[int] = mapped_column(Integer, default=0)
    email: Mapped[str] = mapped_column(String(80))


@pytest.fixture
async def stack() -> AsyncIterator[CacheStack]:
    # Two deployments are two processes: only a shared Redis lets them meet.
    async with open_stack("redis") as opened:
        yield opened


@pytest.fixture
async def factory(engine: AsyncEngine) -> AsyncIterator[Factory]:
    async with engine.begin() as conn:
        await conn.run_sync(NewBase.metadata.drop_all)
        await conn.run_sync(NewBase.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(NewBase.metadata.drop_all)


def _values(rows: list[Any], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(getattr(row, name) for name in names) for row in rows]


async def test_a_new_release_never_decodes_the_old_release_entries(
    stack: CacheStack, factory: Factory
) -> None:
    old_config, new_config = stack.config(), stack.config()
    async with factory() as session:
        await BaseRepository(NewMember, session).bulk_create(
            [{"name": "ada", "age": 36, "email": "ada@example.com"}]
        )
    async with factory() as session:
        old_rows = await BaseRepository(OldMember, session, old_config).list()
    await old_config.settle()
    assert _values(old_rows, "name", "email") == [("ada", "ada@example.com")]

    async with factory() as session:
        new_rows = await BaseRepository(NewMember, session, new_config).list()
    # Decoding the old entry positionally would give age="ada@example.com" and no email.
    assert _values(new_rows, "name", "age", "email") == [("ada", 36, "ada@example.com")]
    await new_config.settle()
    async with factory() as session:
        again = await BaseRepository(NewMember, session, new_config).list()
    assert _values(again, "name", "age", "email") == [("ada", 36, "ada@example.com")]
    assert new_config.stats("deploy_members").hits >= 1


async def test_a_write_by_either_release_retires_both_releases_entries(
    stack: CacheStack, factory: Factory
) -> None:
    old_config, new_config = stack.config(), stack.config()
    async with factory() as session:
        await BaseRepository(NewMember, session).bulk_create(
            [{"name": "ada", "age": 36, "email": "ada@example.com"}]
        )
    for config, model in ((old_config, OldMember), (new_config, NewMember)):
        async with factory() as session:
            await BaseRepository(model, session, config).list()
        await config.settle()

    async with factory() as session:
        await BaseRepository(OldMember, session, old_config).bulk_update(
            {"name": "ada"}, {"email": "ada@new.example.com"}
        )
    async with factory() as session:
        new_rows = await BaseRepository(NewMember, session, new_config).list()
    assert _values(new_rows, "email") == [("ada@new.example.com",)]
