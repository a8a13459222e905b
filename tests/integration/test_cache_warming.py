"""Popular-query tracking and warming, on every database and both cache backends; fleet-wide
behaviour (shared usage, one warmer per interval) on Redis, between configs standing in for
processes and between this process and real child processes. ``stats()`` too.

Time is injected (``CacheConfig(clock=..., wall_clock=...)``, ``CacheWarmer(sleep=...)``),
never slept on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig, CacheWarmer, CacheWarmingConfig, WarmReport
from tests.clocks import FakeClock
from tests.integration.cache_stack import STACKS, CacheStack, open_stack
from tests.models import Article, User

Factory = async_sessionmaker[AsyncSession]
CountQueries = Callable[[], AbstractContextManager[Any]]
HOUR = 3600
PROJECT = Path(__file__).resolve().parents[2]
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


@pytest.fixture
async def redis_stack() -> AsyncIterator[CacheStack]:
    async with open_stack("redis") as opened:
        yield opened


def warming(**options: Any) -> CacheWarmingConfig:
    options.setdefault("enabled", True)
    options.setdefault("warm_interval_seconds", HOUR)
    return CacheWarmingConfig(**options)


async def seed(factory: Factory, users: int = 12) -> None:
    async with factory() as session:
        await BaseRepository(User, session).bulk_create(
            [
                {
                    "name": f"u{i:02}",
                    "department": ("eng", "ops", "sales", "hr")[i % 4],
                    "is_active": i % 3 != 0,
                    "last_login": dt.datetime(2024, 1, 1) + dt.timedelta(days=i),
                }
                for i in range(users)
            ]
        )
        await BaseRepository(Article, session).bulk_create(
            [{"id": i, "title": f"a{i}", "score": Decimal(i) / 2} for i in range(1, 9)]
        )


async def use(config: CacheConfig, factory: Factory, times: int, read: Callable[[Any], Any]) -> Any:
    """Run ``read(repo)`` ``times`` times, each in a session of its own (a request)."""
    result = None
    for _ in range(times):
        async with factory() as session:
            result = await read(BaseRepository(User, session, config))
    await config.settle()
    return result


async def sql_sent(
    factory: Factory, count_queries: CountQueries, config: CacheConfig, read: Callable[[Any], Any]
) -> int:
    """Statements (transaction control aside) one read sends; 0 only if it sent none at all."""
    async with factory() as session:
        with count_queries() as log:
            await read(BaseRepository(User, session, config))
    await config.settle()
    return log.count or len(log.statements)


async def warm(config: CacheConfig, factory: Factory, model: type[Any] = User) -> WarmReport:
    async with factory() as session:
        return await BaseRepository(model, session, config).warm_cache()


ACTIVE: Callable[[Any], Any] = lambda repo: repo.list(is_active=True)  # noqa: E731
ENG_COUNT: Callable[[Any], Any] = lambda repo: repo.count(department="eng")  # noqa: E731
GET_3: Callable[[Any], Any] = lambda repo: repo.get(3)  # noqa: E731
OPS: Callable[[Any], Any] = lambda repo: repo.list(department="ops")  # noqa: E731


def dept(name: str) -> Callable[[Any], Any]:
    return lambda repo: repo.list(department=name)


# -- usage tracking --------------------------------------------------------------------------


@pytest.mark.parametrize("track_usage", [True, False])
async def test_usage_tracking_counts_list_count_get_and_get_many(
    stack: CacheStack, session_factory: Factory, track_usage: bool
) -> None:
    await seed(session_factory)
    config = stack.config(warming(track_usage=track_usage, min_usage_count=1))

    await use(config, session_factory, 3, ACTIVE)
    await use(config, session_factory, 2, ENG_COUNT)
    await use(config, session_factory, 1, GET_3)
    await use(config, session_factory, 4, lambda repo: repo.get_many([1, 2]))
    await use(config, session_factory, 5, lambda repo: repo.exists(department="eng"))

    counts = {u.operation: u.count for u in config._query_usage.values()}
    if not track_usage:
        assert counts == {}
        assert config.get_popular_queries() == []
        assert (await warm(config, session_factory)).queries == ()
        return
    assert counts == {"list": 3, "count": 2, "get": 1, "get_many": 4}  # exists() is not cached
    popular = config.get_popular_queries()
    assert [(u.operation, u.count) for u in popular] == [
        ("get_many", 4),
        ("list", 3),
        ("count", 2),
        ("get", 1),
    ]


async def test_popular_queries_honour_limit_min_count_and_order(
    stack: CacheStack, session_factory: Factory
) -> None:
    await seed(session_factory)
    config = stack.config(warming(popular_queries_limit=2, min_usage_count=5))
    for name, times in [("hr", 4), ("sales", 5), ("eng", 7), ("ops", 6)]:
        await use(config, session_factory, times, dept(name))

    def departments() -> list[tuple[str, float]]:
        return [
            (u.spec["filters"]["department"], u.count)  # type: ignore[index]
            for u in config.get_popular_queries()
        ]

    assert departments() == [("eng", 7), ("ops", 6)]
    config.warming_config.popular_queries_limit = 10
    assert departments() == [("eng", 7), ("ops", 6), ("sales", 5)]
    config.warming_config.min_usage_count = 4
    assert departments() == [("eng", 7), ("ops", 6), ("sales", 5), ("hr", 4)]
    assert len(config._query_usage) == 4


async def test_popular_queries_count_uses_made_after_a_warm(
    stack: CacheStack, session_factory: Factory
) -> None:
    """Uses made since the last sync with the backend count as well as the synced ones."""
    await seed(session_factory)
    config = stack.config(warming(min_usage_count=5))
    await use(config, session_factory, 6, OPS)
    await warm(config, session_factory)  # ages the score: 6 -> 3

    await use(config, session_factory, 4, OPS)

    assert [u.count for u in config._query_usage.values()] == [7]
    assert [u.operation for u in config.get_popular_queries()] == ["list"], (
        "7 uses (3 after ageing + 4 new) but not popular"
    )


# -- when to warm ----------------------------------------------------------------------------


async def test_should_warm_cache_follows_the_interval(
    stack: CacheStack, session_factory: Factory
) -> None:
    clock = FakeClock()
    config = stack.config(warming(), clock=clock)
    assert config.should_warm_cache()  # never warmed

    await warm(config, session_factory)
    assert not config.should_warm_cache()
    clock.advance(HOUR - 0.001)
    assert not config.should_warm_cache()
    clock.advance(0.001)
    assert config.should_warm_cache()

    await warm(config, session_factory)
    assert not config.should_warm_cache()

    disabled = stack.config(warming(enabled=False), clock=clock)
    assert not disabled.should_warm_cache()
    clock.advance(10 * HOUR)
    assert not disabled.should_warm_cache()


async def test_guide_check_warms_every_repository_sharing_a_config(
    stack: CacheStack, session_factory: Factory
) -> None:
    await seed(session_factory)
    config = stack.config(warming(min_usage_count=1))
    async with session_factory() as session:
        users = BaseRepository(User, session, config)
        articles = BaseRepository(Article, session, config)
        await users.list(is_active=True)
        await articles.list(published=False)
        await session.commit()

    warmed: dict[str, int] = {}
    async with session_factory() as session:
        for repo in (
            BaseRepository(User, session, config),
            BaseRepository(Article, session, config),
        ):
            await repo.invalidate_cache("*")
            # repo._cache_config answers for the repository's own model only.
            assert [u.model for u in repo._cache_config.get_popular_queries()] == [repo._info.name]
            assert {u.model for u in repo._cache_config._query_usage.values()} == {repo._info.name}
            if repo._cache_config.should_warm_cache():
                warmed[repo._info.name] = (await repo.warm_cache()).warmed
        # Each model's last warm is its own: neither is due again.
        for repo in (
            BaseRepository(User, session, config),
            BaseRepository(Article, session, config),
        ):
            assert not repo._cache_config.should_warm_cache()
    assert warmed == {"users": 1, "articles": 1}
    user_stats, article_stats = config.stats("users"), config.stats("articles")
    assert user_stats.last_warm is not None
    assert user_stats.last_warm.model == "users"
    assert article_stats.last_warm is not None
    assert article_stats.last_warm.model == "articles"


# -- warm_cache ------------------------------------------------------------------------------


async def test_warm_cache_turns_popular_queries_into_zero_query_hits(
    stack: CacheStack, session_factory: Factory, count_queries: CountQueries
) -> None:
    await seed(session_factory)
    config = stack.config(warming(min_usage_count=2))
    popular = [ACTIVE, ENG_COUNT, GET_3]
    for read in popular:
        await use(config, session_factory, 8, read)
    await use(config, session_factory, 1, OPS)  # used once: not popular
    async with session_factory() as session:
        await BaseRepository(User, session, config).invalidate_cache("*")
    assert [await sql_sent(session_factory, count_queries, config, r) for r in popular] == [1] * 3
    async with session_factory() as session:
        await BaseRepository(User, session, config).invalidate_cache("*")

    first = await warm(config, session_factory)  # scores 8 -> 4

    assert (first.warmed, first.already_cached, first.failed) == (3, 0, 0)
    assert sorted(u.operation for u in first.queries) == ["count", "get", "list"]
    assert [await sql_sent(session_factory, count_queries, config, r) for r in popular] == [0] * 3
    assert await sql_sent(session_factory, count_queries, config, OPS) == 1

    second = await warm(config, session_factory)  # all still cached; scores 4 -> 2
    assert (second.warmed, second.already_cached, second.failed) == (0, 3, 0)

    async with session_factory() as session:
        await BaseRepository(User, session, config).create({"name": "new", "is_active": True})
    third = await warm(config, session_factory)  # the write made them stale; scores 2 -> 1
    assert (third.warmed, third.already_cached, third.failed) == (3, 0, 0)
    assert await sql_sent(session_factory, count_queries, config, ACTIVE) == 0
    assert len(await use(config, session_factory, 1, ACTIVE)) == 9

    # Aged below min_usage_count (2 -> 1), but for the list, used twice more just above.
    fourth = await warm(config, session_factory)
    assert (fourth.warmed, fourth.already_cached) == (0, 1)
    assert [u.operation for u in fourth.queries] == ["list"]


async def test_warm_replays_datetime_and_decimal_filters_with_their_types(
    stack: CacheStack, session_factory: Factory, count_queries: CountQueries
) -> None:
    await seed(session_factory)
    config = stack.config(warming(min_usage_count=3))
    since = dt.datetime(2024, 1, 5, 12, 30, 15, 250)
    cutoff = Decimal("2.50")

    def recent(repo: Any) -> Any:
        return repo.list(last_login__gte=since, order_by="-last_login")

    async def well_scored() -> list[Article]:
        async with session_factory() as session:
            return await BaseRepository(Article, session, config).list(score__gte=cutoff)

    await use(config, session_factory, 3, recent)
    for _ in range(3):
        await well_scored()
    await config.settle()
    filters = {u.model: u.spec["filters"] for u in config._query_usage.values()}  # type: ignore[index]
    assert filters == {"users": {"last_login__gte": since}, "articles": {"score__gte": cutoff}}
    assert type(filters["users"]["last_login__gte"]) is dt.datetime
    assert type(filters["articles"]["score__gte"]) is Decimal
    for model in (User, Article):
        async with session_factory() as session:
            await BaseRepository(model, session, config).invalidate_cache("*")

    reports = [await warm(config, session_factory, model) for model in (User, Article)]

    # Replayed with other types (a string for the datetime) the digest would differ, the fill
    # would land under another key and the reads below would miss.
    assert [(r.model, r.warmed) for r in reports] == [("users", 1), ("articles", 1)]
    assert await sql_sent(session_factory, count_queries, config, recent) == 0
    with count_queries() as log:
        articles = await well_scored()
    assert log.statements == []
    assert [a.id for a in articles] == [5, 6, 7, 8]


# -- stats -----------------------------------------------------------------------------------


async def test_stats_follow_hits_misses_fills_invalidations_and_warms(
    stack: CacheStack, session_factory: Factory
) -> None:
    await seed(session_factory)
    wall = FakeClock(start=1_700_000_000.25)  # the shared wall clock, in seconds
    config = stack.config(warming(min_usage_count=2), wall_clock=wall)

    def counters() -> tuple[int, int, int, int]:
        s = config.stats("users")
        return (s.hits, s.misses, s.fills, s.invalidations)

    empty = config.stats()
    assert (empty.hits, empty.misses, empty.hit_ratio, empty.last_warm) == (0, 0, 0.0, None)

    await use(config, session_factory, 1, ACTIVE)
    assert counters() == (0, 1, 1, 0)
    await use(config, session_factory, 3, ACTIVE)
    assert counters() == (3, 1, 1, 0)
    assert config.stats("users").hit_ratio == 0.75

    async with session_factory() as session:
        await BaseRepository(User, session, config).create({"name": "new"})
    assert counters() == (3, 1, 1, 1)
    await use(config, session_factory, 1, ACTIVE)  # the write made the entry stale
    assert counters() == (3, 2, 2, 1)
    async with session_factory() as session:
        await BaseRepository(User, session, config).invalidate_cache("list:*")
    assert counters() == (3, 2, 2, 2)

    before = time.monotonic()
    report = await warm(config, session_factory)
    after = time.monotonic()
    last = config.stats("users").last_warm
    assert last is report
    assert (last.model, last.warmed, last.already_cached, last.failed) == ("users", 1, 0, 0)
    # started_at is wall-clock time (comparable across processes); the duration is measured
    # on the monotonic clock.
    assert last.started_at == wall.now
    assert 0 < last.duration_seconds <= after - before
    assert counters() == (3, 3, 3, 2)  # the replay missed and filled
    assert config.stats().hits == config.stats("users").hits  # one model: totals agree
    assert config.stats("articles").hits == 0
    assert (config.stats().backend_errors, config.stats().stale_fills_rejected) == (0, 0)


# -- fleet-wide, on Redis --------------------------------------------------------------------


def usage_key(stack: CacheStack, table: str = "users") -> str:
    return f"{stack.prefix}:v1:{{{table}}}:~usage"


async def test_usage_is_shared_through_redis_and_aged_at_each_warm(
    redis_stack: CacheStack, session_factory: Factory, count_queries: CountQueries
) -> None:
    await seed(session_factory)
    a = redis_stack.config(warming(min_usage_count=5), usage_flush_every=4)
    b = redis_stack.config(warming(min_usage_count=5), usage_flush_every=1)
    client = redis_stack.redis_client()
    assert client is not None

    await use(a, session_factory, 7, ACTIVE)  # sent after the 4th use; 3 still pending
    digest = next(iter(a._query_usage.values())).digest
    assert await client.zscore(usage_key(redis_stack), digest) == 4.0
    await use(a, session_factory, 1, ACTIVE)  # the 8th use sends the other 4
    assert await client.zscore(usage_key(redis_stack), digest) == 8.0

    assert b.get_popular_queries() == []  # b has not synced yet
    await use(b, session_factory, 1, OPS)  # b's own use syncs: it sends, then reads the top
    popular = b.get_popular_queries()
    assert [(u.digest, u.operation) for u in popular] == [(digest, "list")]
    assert popular[0].spec is not None
    assert popular[0].spec["filters"] == {"is_active": True}

    async with session_factory() as session:
        await BaseRepository(User, session, b).invalidate_cache("*")
    report = await warm(b, session_factory)  # b warms a's query, never having run it

    assert (report.warmed, [u.digest for u in report.queries]) == (1, [digest])
    assert await sql_sent(session_factory, count_queries, a, ACTIVE) == 0
    assert await client.zscore(usage_key(redis_stack), digest) == 4.0  # aged: 8 / 2
    await warm(b, session_factory)
    assert await client.zscore(usage_key(redis_stack), digest) == 2.0


async def test_background_warmer_warms_once_per_interval_across_configs(
    stack: CacheStack, session_factory: Factory
) -> None:
    """Two configs on one Redis stand for two processes: per interval one of them warms. On the
    in-process backend there is one process, and a second run in the interval does nothing."""
    await seed(session_factory)
    wall = FakeClock(start=1_000 * HOUR + 17)
    a = stack.config(warming(min_usage_count=2), wall_clock=wall, usage_flush_every=1)
    b = stack.config(warming(min_usage_count=2), wall_clock=wall) if stack.is_redis else a
    await use(a, session_factory, 8, ACTIVE)
    async with session_factory() as session:
        await BaseRepository(User, session, a).invalidate_cache("*")
    warmers = [CacheWarmer(a, session_factory, [User]), CacheWarmer(b, session_factory, [User])]

    def warmed(results: list[list[WarmReport]]) -> list[int]:
        assert all(len(reports) <= 1 for reports in results)
        return [reports[0].warmed if reports else -1 for reports in results]

    first = warmed([await warmers[0].run_once(), await warmers[1].run_once()])
    wall.advance(HOUR)
    second = warmed([await warmers[1].run_once(), await warmers[0].run_once()])
    wall.advance(HOUR)
    third = warmed(list(await asyncio.gather(*(w.run_once() for w in warmers))))

    # -1: lost the interval's lock. Warmed 1 first (nothing cached), then 0: still cached.
    assert first == [1, -1]
    assert second == [0, -1]
    assert sorted(third) == [-1, 0]


async def test_warmer_as_async_context_manager_runs_each_interval_and_stops(
    stack: CacheStack, session_factory: Factory
) -> None:
    await seed(session_factory)
    wall = FakeClock(start=1_000 * HOUR + 600)
    config = stack.config(warming(min_usage_count=1), wall_clock=wall)
    await use(config, session_factory, 2, ACTIVE)
    slept: list[float] = []
    seen: list[WarmReport | None] = []
    blocked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        seen.append(config.stats().last_warm)
        if len(slept) == 3:
            blocked.set()
            await asyncio.Event().wait()  # until cancelled
        wall.advance(seconds)

    async with CacheWarmer(config, session_factory, [User], sleep=sleep) as warmer:
        await asyncio.wait_for(blocked.wait(), 10)
        task = warmer._task
        assert task is not None
        assert not task.done()

    assert warmer._task is None
    assert task.done()
    assert slept == [HOUR - 600, HOUR, HOUR]  # to the start of each next interval
    assert len({id(report) for report in seen}) == 3
    assert None not in seen
    await warmer.stop()  # stopping again is harmless


# -- real processes --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from baserepo import (
        BaseRepository, CacheConfig, CacheWarmer, CacheWarmingConfig, create_engine,
    )
    from tests.models import User

    async def main():
        env = os.environ
        engine = create_engine(env["CHILD_DB_URL"])
        client = Redis.from_url(env["CHILD_REDIS_URL"])
        wall = float(env["CHILD_WALL"])
        config = CacheConfig(
            redis_client=client,
            key_prefix=env["CHILD_PREFIX"],
            warming_config=CacheWarmingConfig(
                enabled=True, min_usage_count=5, warm_interval_seconds=3600
            ),
            usage_flush_every=1,
            wall_clock=lambda: wall,
        )
        factory = async_sessionmaker(engine, expire_on_commit=False)
        for _ in range(int(env["CHILD_USES"])):
            async with factory() as session:
                await BaseRepository(User, session, config).list(is_active=True)
        if env["CHILD_INVALIDATE"]:
            async with factory() as session:
                await BaseRepository(User, session, config).invalidate_cache("*")
        reports = await CacheWarmer(config, factory, [User]).run_once()
        await config.settle()
        print(json.dumps([[r.model, r.warmed, r.already_cached] for r in reports]))
        await client.aclose()
        await engine.dispose()

    asyncio.run(main())
    """
)


async def spawn_child(
    db_url: str, stack: CacheStack, wall: float, uses: int, invalidate: bool = False
) -> Any:
    env = dict(
        os.environ,
        CHILD_DB_URL=db_url,
        CHILD_REDIS_URL=os.environ.get("BASEREPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        CHILD_PREFIX=stack.prefix,
        CHILD_WALL=repr(wall),
        CHILD_USES=str(uses),
        CHILD_INVALIDATE="1" if invalidate else "",
    )
    return await asyncio.create_subprocess_exec(
        VENV_PYTHON if VENV_PYTHON.exists() else sys.executable,
        "-c",
        CHILD,
        cwd=PROJECT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def child_reports(process: Any) -> list[list[Any]]:
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()[-3000:]
    reports: list[list[Any]] = json.loads(out.decode().strip().splitlines()[-1])
    return reports


async def test_separate_processes_share_usage_and_warm_once_per_interval(
    redis_stack: CacheStack,
    db_url: str,
    session_factory: Factory,
    count_queries: CountQueries,
) -> None:
    await seed(session_factory)
    interval_start = 2_000 * HOUR
    wall = FakeClock(start=interval_start + 5)
    parent = redis_stack.config(warming(min_usage_count=5), wall_clock=wall, usage_flush_every=1)
    client = redis_stack.redis_client()
    assert client is not None

    # A child process uses the query 12 times, drops the cache, then runs the warmer: alone in
    # the interval, it warms (and the warm ages the shared score to 6).
    child = await spawn_child(db_url, redis_stack, wall(), uses=12, invalidate=True)
    assert await child_reports(child) == [["users", 1, 0]]

    # This process lost that interval, but reads what the child stored, without SQL...
    assert await CacheWarmer(parent, session_factory, [User]).run_once() == []
    assert await sql_sent(session_factory, count_queries, parent, ACTIVE) == 0
    # ...and its one use above synced the fleet's score: 12 / 2 + 1.
    digest = next(iter(parent._query_usage.values())).digest
    assert await client.zscore(usage_key(redis_stack), digest) == 7.0
    assert [u.digest for u in parent.get_popular_queries()] == [digest]

    # Next interval: this process and a new child race for it; exactly one warms.
    wall.advance(HOUR)
    child = await spawn_child(db_url, redis_stack, wall(), uses=0)
    mine = await CacheWarmer(parent, session_factory, [User]).run_once()
    theirs = await child_reports(child)
    assert len(mine) + len(theirs) == 1, (mine, theirs)
    winner = [[r.model, r.warmed, r.already_cached] for r in mine] or theirs
    assert winner == [["users", 0, 1]]  # the entry the first child stored is still current
