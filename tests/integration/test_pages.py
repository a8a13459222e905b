"""Keyset pagination (``page()``) on every database: every row once, in order, whatever is
inserted or deleted between fetches; opaque cursors that refuse tampering; cached like list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheWarmingConfig, InvalidCursorError, InvalidFilterError
from baserepo.cache.config import CacheConfig
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.models import Article, User

Factory = async_sessionmaker[AsyncSession]
CountQueries = Callable[[], AbstractContextManager[Any]]

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456)


@pytest.fixture
async def people(session_factory: Factory) -> None:
    # Names and timestamps repeat, so only the primary key decides between some rows.
    async with session_factory() as session:
        await BaseRepository(User, session).bulk_create(
            [
                {
                    "name": f"n{i % 4}",
                    "department": "eng" if i % 2 else "ops",
                    "created_at": T0 + timedelta(minutes=i // 3),
                }
                for i in range(11)
            ]
        )


async def walk(
    repo: BaseRepository[Any, Any, Any], limit: int, **options: Any
) -> tuple[list[int], int]:
    """Every id ``page()`` returns, following cursors to the end; and how many pages."""
    ids: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await repo.page(limit=limit, after=cursor, **options)
        pages += 1
        assert len(page.items) <= limit
        ids += [row.id for row in page.items]
        assert page.has_more is (page.next_cursor is not None)
        if page.next_cursor is None:
            return ids, pages
        cursor = page.next_cursor


ORDERS: list[Any] = [None, "name", "-name", ["-created_at", "name"], ["name", "-id"], "-id"]


@pytest.mark.parametrize("order_by", ORDERS, ids=repr)
async def test_walking_the_pages_returns_every_row_once_in_order(
    order_by: Any, session: AsyncSession, people: None
) -> None:
    repo = BaseRepository(User, session)
    expected = [u.id for u in await repo.list(order_by=order_by)]
    assert len(expected) == 11
    for limit in (1, 3, 11, 50):
        ids, pages = await walk(repo, limit, order_by=order_by)
        assert ids == expected, limit
        assert pages == max(1, -(-11 // limit)), limit


async def test_filters_and_soft_delete_apply_to_every_page(
    session: AsyncSession, people: None
) -> None:
    repo = BaseRepository(User, session)
    eng = [u.id for u in await repo.list(department="eng", order_by="-created_at")]
    await repo.delete(eng[1])
    ids, _ = await walk(repo, 2, order_by="-created_at", department="eng")
    assert ids == [i for i in eng if i != eng[1]]
    ids, _ = await walk(repo, 2, order_by="-created_at", department="eng", include_deleted=True)
    assert ids == eng


async def test_rows_inserted_or_deleted_between_pages_never_repeat_or_skip(
    session_factory: Factory, people: None
) -> None:
    async with session_factory() as session:
        repo = BaseRepository(User, session)
        first = await repo.page(limit=4, order_by="name")
        seen = [u.id for u in first.items]
        last_name = first.items[-1].name
        before = [u.id for u in await repo.list(order_by="name")]
        # A row sorting before the cursor, one after it, and a not yet seen row deleted.
        early = await repo.create({"name": "a-early"})
        late = await repo.create({"name": "zz-late"})
        doomed = before[6]
        assert await repo.delete(doomed, soft_delete=False)
        # Offsets would repeat the row now at position 4 (or skip one after the delete).
        cursor = first.next_cursor
        while cursor is not None:
            page = await repo.page(limit=4, after=cursor, order_by="name")
            seen += [u.id for u in page.items]
            cursor = page.next_cursor
    assert last_name == "n1"
    assert len(seen) == len(set(seen))
    assert early.id not in seen
    assert doomed not in seen
    assert seen == [i for i in before if i != doomed] + [late.id]


async def test_a_damaged_or_foreign_cursor_is_refused(session: AsyncSession, people: None) -> None:
    repo = BaseRepository(User, session)
    cursor = (await repo.page(limit=2, order_by="name")).next_cursor
    assert cursor is not None
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    for bad in (flipped, cursor[:-3], "not a cursor!", "", "e30"):
        with pytest.raises(InvalidCursorError):
            await repo.page(limit=2, after=bad, order_by="name")
    with pytest.raises(InvalidCursorError, match="ordered by"):
        await repo.page(limit=2, after=cursor, order_by="-name")
    await BaseRepository(Article, session).create({"id": 1, "title": "t"})
    await BaseRepository(Article, session).create({"id": 2, "title": "u"})
    article_cursor = (await BaseRepository(Article, session).page(limit=1)).next_cursor
    assert article_cursor is not None
    with pytest.raises(InvalidCursorError, match="'articles'"):
        await repo.page(limit=2, after=article_cursor)
    with pytest.raises(ValueError, match="altered"):  # a ValueError: a 400, not a 500
        await repo.page(limit=2, after=flipped, order_by="name")


async def test_what_a_cursor_cannot_continue_from_is_refused(
    session: AsyncSession, people: None
) -> None:
    repo = BaseRepository(User, session)
    with pytest.raises(InvalidFilterError, match="may hold NULL"):
        await repo.page(order_by="salary")
    with pytest.raises(InvalidFilterError, match="has no field 'nope'"):
        await repo.page(order_by="-nope")
    with pytest.raises(InvalidFilterError, match="field names"):
        await repo.page(order_by=[User.name.desc()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="positive"):
        await repo.page(limit=0)


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def _walk_in_sessions(
    factory: Factory, config: CacheConfig, **options: Any
) -> tuple[list[int], int]:
    """A walk with each page fetched in a session of its own (a request each, as in an API)."""
    ids: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        async with factory() as session:
            page = await BaseRepository(User, session, config).page(after=cursor, **options)
        pages += 1
        ids += [u.id for u in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids, pages


async def test_pages_are_cached_like_list_and_a_write_makes_them_stale(
    session_factory: Factory, people: None, stack: CacheStack
) -> None:
    config = stack.config(operation_timeout=5.0)
    options = {"limit": 3, "order_by": ["-created_at", "name"], "department": "ops"}
    first, pages = await _walk_in_sessions(session_factory, config, **options)
    await config.settle()
    again, _ = await _walk_in_sessions(session_factory, config, **options)
    assert again == first
    assert config.stats("users").hits == pages
    async with session_factory() as session:
        await BaseRepository(User, session, config).update(first[0], {"department": "eng"})
    await config.settle()
    after_write, _ = await _walk_in_sessions(session_factory, config, **options)
    assert after_write == first[1:]


async def test_warming_replays_a_page_query(
    session_factory: Factory, people: None, stack: CacheStack, count_queries: CountQueries
) -> None:
    config = stack.config(
        CacheWarmingConfig(enabled=True, min_usage_count=2), operation_timeout=5.0
    )
    options = {"limit": 2, "order_by": "-created_at"}
    async with session_factory() as session:
        cursor = (await BaseRepository(User, session).page(**options)).next_cursor
    for _ in range(3):
        async with session_factory() as session:
            await BaseRepository(User, session, config).page(after=cursor, **options)
    await config.settle()
    async with session_factory() as session:
        await BaseRepository(User, session, config).invalidate_cache("*")
        report = await BaseRepository(User, session, config).warm_cache()
    assert (report.warmed, report.failed) == (1, 0)
    assert [u.operation for u in report.queries] == ["page"]
    await config.settle()
    async with session_factory() as session:
        with count_queries() as log:
            page = await BaseRepository(User, session, config).page(after=cursor, **options)
    assert log.count == 0
    assert len(page.items) == 2
