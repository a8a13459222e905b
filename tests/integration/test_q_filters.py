"""``Q``: OR, AND and NOT of typed filters, on every database, in reads, bulk changes and the
cache (keyed canonically, replayed by warming)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheWarmingConfig, InvalidFilterError, Q
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.models import User

Factory = async_sessionmaker[AsyncSession]
CountQueries = Callable[[], AbstractContextManager[Any]]

# name, department, salary
PEOPLE: list[tuple[str, str | None, int | None]] = [
    ("ann", "eng", 100),
    ("ben", "eng", 300),
    ("cid", "ops", 500),
    ("dee", None, 700),
    ("eve", "ops", None),
]


@pytest.fixture
async def people(session_factory: Factory) -> None:
    async with session_factory() as session:
        await BaseRepository(User, session).bulk_create(
            [{"name": n, "department": d, "salary": s} for n, d, s in PEOPLE]
        )
        await BaseRepository(User, session).create({"name": "zed", "department": "eng"})
        zed = (await session.scalars(select(User).where(User.name == "zed"))).one()
        await BaseRepository(User, session).delete(zed.id)


def names(rows: list[User]) -> list[str]:
    return sorted(u.name for u in rows)


CASES: dict[str, tuple[Q, list[str]]] = {
    "or": (Q(name="ann") | Q(salary__gte=500), ["ann", "cid", "dee"]),
    "and": (Q(department="eng") & Q(salary__gt=100), ["ben"]),
    "two keys mean both": (Q(department="ops", salary__isnull=True), ["eve"]),
    "not, keeping NULLs": (~Q(department="eng"), ["cid", "dee", "eve"]),
    "not of an or": (~(Q(department="eng") | Q(salary__lt=600)), ["dee", "eve"]),
    "nested": (
        (Q(department="eng") | Q(department="ops")) & ~Q(name__in=["ann", "cid"]),
        [
            "ben",
            "eve",
        ],
    ),
    "typed from text": (Q(salary__gte="500") | Q(salary__lte="100"), ["ann", "cid", "dee"]),
    "empty": (Q(), ["ann", "ben", "cid", "dee", "eve"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_q_combines_filters(case: str, session: AsyncSession, people: None) -> None:
    q, expected = CASES[case]
    repo = BaseRepository(User, session)
    assert names(await repo.list(q)) == expected
    assert await repo.count(q) == len(expected)
    assert await repo.exists(q) is bool(expected)
    ids = [u.id for u in await repo.list(q, order_by="name")]
    page = await repo.page(q, limit=10, order_by="name")
    assert [u.id for u in page.items] == ids


async def test_q_with_keyword_filters_and_soft_delete(session: AsyncSession, people: None) -> None:
    repo = BaseRepository(User, session)
    either = Q(department="eng") | Q(department="ops")
    assert names(await repo.list(either, salary__lt=400)) == ["ann", "ben"]
    assert "zed" not in names(await repo.list(either))  # soft-deleted: hidden
    assert names(await repo.list(either, include_deleted=True))[-1] == "zed"
    # Naming deleted_at inside the Q asks about deleted rows, as a keyword filter does.
    assert names(await repo.list(Q(deleted_at__isnotnull=True) | Q(name="nobody"))) == ["zed"]


async def test_a_bad_value_in_a_q_names_its_key(session: AsyncSession, people: None) -> None:
    repo = BaseRepository(User, session)
    with pytest.raises(InvalidFilterError, match="salary__gte"):
        await repo.list(Q(name="ann") | Q(salary__gte="lots"))
    with pytest.raises(InvalidFilterError, match="has no field 'nope'"):
        await repo.count(~Q(nope=1))
    with pytest.raises(TypeError, match="combines with another Q"):
        Q(name="a") | {"name": "b"}  # type: ignore[operator]


async def test_bulk_changes_take_a_q(session_factory: Factory, people: None) -> None:
    async with session_factory() as session:
        repo = BaseRepository(User, session)
        updated = await repo.bulk_update(Q(name="ann") | Q(salary__gte=700), {"role": "lead"})
        assert updated.success_count == 2
        deleted = await repo.bulk_delete(~Q(department="eng"), soft_delete=False)
        assert deleted.success_count == 3  # cid, dee (no department), eve; zed is eng
        with pytest.raises(ValueError, match="all_rows"):
            await repo.bulk_delete(Q())
    async with session_factory() as session:
        left = await BaseRepository(User, session).list(include_deleted=True)
        assert [(u.name, u.role) for u in sorted(left, key=lambda u: u.name)] == [
            ("ann", "lead"),
            ("ben", None),
            ("zed", None),
        ]


def test_q_has_a_canonical_spec_that_rebuilds_it() -> None:
    q = (Q(b=2, a=1) | ~Q(when=datetime(2024, 1, 1))) & Q(x__in=[1, 2])
    assert Q(a=1, b=2) == Q(b=2, a=1)
    assert Q.from_spec(q.spec()) == q
    assert repr(~Q(a=1)) == "~Q(a=1)"
    assert not Q()
    with pytest.raises(TypeError):
        Q.from_spec(["xor", []])


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


async def test_a_q_query_is_cached_stays_fresh_and_is_warmed(
    session_factory: Factory, people: None, stack: CacheStack, count_queries: CountQueries
) -> None:
    config = stack.config(
        CacheWarmingConfig(enabled=True, min_usage_count=2), operation_timeout=5.0
    )
    since = datetime(2020, 1, 2, 3, 4, 5, 6)

    def q(flip: bool = False) -> Q:
        # The same query written two ways: one cache entry.
        if flip:
            either = Q(salary__gte="500", last_login__isnull=True) | ~Q(department="eng")
            return either & Q(created_at__gte=since.isoformat())
        either = Q(last_login__isnull=True, salary__gte=500) | ~Q(department="eng")
        return either & Q(created_at__gte=since)

    for flip in (False, True, False):
        async with session_factory() as session:
            repo = BaseRepository(User, session, config)
            assert names(await repo.list(q(flip), created_at__gte=since)) == ["cid", "dee", "eve"]
        await config.settle()
    assert config.stats("users").hits == 2
    async with session_factory() as session:
        await BaseRepository(User, session, config).update(
            (await session.scalars(select(User.id).where(User.name == "ann"))).one(),
            {"department": "ops"},
        )
    async with session_factory() as session:
        repo = BaseRepository(User, session, config)
        assert names(await repo.list(q(), created_at__gte=since)) == ["ann", "cid", "dee", "eve"]
        await repo.invalidate_cache("*")
        report = await repo.warm_cache()
    assert (report.warmed, report.failed) == (1, 0)
    await config.settle()
    async with session_factory() as session:
        with count_queries() as log:
            rows = await BaseRepository(User, session, config).list(q(), created_at__gte=since)
    assert log.count == 0
    assert names(rows) == ["ann", "cid", "dee", "eve"]
