"""The query cache never serves what the database would not: on every database, with the
in-process backend and with Redis (and, for a subset, a Redis Cluster).

Each read runs in a session of its own, as a request would; the oracle is the same query run
without a cache. Reads that must come from the cache are proved so by counting the SELECTs the
engine sends (zero). Fills land in the background, so tests ``settle()`` the config before they
expect a later read to hit.

Redis outages are in ``test_cache_outages.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheWarmingConfig, create_engine
from tests.integration.cache_coherence_support import (
    ALL_STACKS,
    STACKS,
    Factory,
    Query,
    Stack,
    assert_coherent,
    install_gate,
    person,
    plain,
    prime,
    run,
    seed,
    selects_on,
    truth,
    user_queries,
)
from tests.models import Article, Base, User

Repo = BaseRepository[Any, Any, Any]


class Rollback(Exception):
    """Raised to make the caller's block roll back."""


@asynccontextmanager
async def rolled_back(transaction: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
    """``async with rolled_back(session.begin()):`` runs the block, then rolls it back."""
    with contextlib.suppress(Rollback):
        async with transaction:
            yield
            raise Rollback


@pytest.fixture(params=STACKS)
def stack_server(request: pytest.FixtureRequest) -> tuple[str, Redis | RedisCluster | None]:
    """The cache's server for one test: none (in-process), the shared Redis or the cluster.

    Sync, so it can start a server lazily with ``getfixturevalue`` (not allowed in an async
    fixture): ``-k memory`` starts nothing. Tests that also run on the cluster say
    ``@pytest.mark.parametrize("stack_server", ALL_STACKS, indirect=True)``.
    """
    if request.param == "memory":
        return "memory", None
    fixture = "redis_client" if request.param == "redis" else "redis_cluster"
    return request.param, request.getfixturevalue(fixture)


@pytest.fixture
async def stack(stack_server: tuple[str, Redis | RedisCluster | None]) -> AsyncIterator[Stack]:
    kind, server = stack_server
    opened = Stack(kind, server)
    try:
        yield opened
    finally:
        await opened.close()


with_cluster = pytest.mark.parametrize("stack_server", ALL_STACKS, indirect=True)


# -- 1. every write kind invalidates ------------------------------------------------------------


@dataclass(frozen=True)
class WriteCase:
    write: Callable[[Repo, list[int]], Awaitable[Any]]
    bumps: tuple[int, int]
    """Fewest and most invalidations the write may make (per batch or per call)."""
    rows: int = 1
    """Rows it changes: a bulk write must bump fewer times than that."""
    setup: Callable[[Factory, list[int]], Awaitable[Any]] | None = None


async def _soft_delete_uncached(factory: Factory, ids: list[int]) -> None:
    async with factory() as session:
        assert await BaseRepository(User, session).delete(ids[1])


# Seeded users: 12, of whom 8 are in "eng" (ids[1], ids[2], ids[4], ...).
WRITES = {
    "create": WriteCase(lambda r, ids: r.create(person(100)), (1, 1)),
    "update": WriteCase(lambda r, ids: r.update(ids[1], {"name": "renamed", "salary": 1}), (1, 1)),
    "delete_soft": WriteCase(lambda r, ids: r.delete(ids[1]), (1, 1)),
    "delete_hard": WriteCase(lambda r, ids: r.delete(ids[1], soft_delete=False), (1, 1)),
    "restore": WriteCase(lambda r, ids: r.restore(ids[1]), (1, 1), setup=_soft_delete_uncached),
    "bulk_create": WriteCase(
        lambda r, ids: r.bulk_create([person(100 + i) for i in range(9)], batch_size=4),
        (1, 3),
        rows=9,
    ),
    "bulk_update": WriteCase(
        lambda r, ids: r.bulk_update({"department": "eng"}, {"salary": 5}, batch_size=3),
        (1, 3),
        rows=8,
    ),
    "bulk_delete_soft": WriteCase(
        lambda r, ids: r.bulk_delete({"department": "eng"}, batch_size=3), (1, 3), rows=8
    ),
    "bulk_delete_hard": WriteCase(
        lambda r, ids: r.bulk_delete({"department": "eng"}, soft_delete=False, batch_size=3),
        (1, 3),
        rows=8,
    ),
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_no_write_kind_leaves_a_stale_list_count_or_get(
    kind: str, stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    case = WRITES[kind]
    ids = await seed(session_factory)
    if case.setup is not None:
        await case.setup(session_factory, ids)
    config = stack.config()
    queries = user_queries(ids)
    cached_before = await prime(session_factory, config, engine, queries)
    bumps_before = config.stats("users").invalidations

    async with session_factory() as session:
        result = await case.write(BaseRepository(User, session, config), ids)
    assert getattr(result, "error_count", 0) == 0, result

    bumps = config.stats("users").invalidations - bumps_before
    low, high = case.bumps
    assert low <= bumps <= high, f"{kind}: {bumps} invalidations"
    if case.rows > 1:
        assert bumps < case.rows, f"{kind} invalidated per row ({bumps} for {case.rows} rows)"
    expected = [await truth(session_factory, query) for query in queries]
    assert expected != cached_before, f"{kind} changed nothing the test had cached"

    # At once (no settle): every cached read gives the database's answer...
    await assert_coherent(session_factory, config, queries)
    # ...and what is cached from now on is the new state, served without the database.
    assert await prime(session_factory, config, engine, queries) == expected


async def test_bulk_writes_in_the_callers_transaction_bump_once(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = stack.config()
    queries = user_queries(ids)
    await prime(session_factory, config, engine, queries)

    async with session_factory() as session, session.begin():
        repo = BaseRepository(User, session, config)
        created = await repo.bulk_create([person(100 + i) for i in range(9)], batch_size=2)
        updated = await repo.bulk_update({"department": "eng"}, {"salary": 3}, batch_size=2)
        deleted = await repo.bulk_delete({"department": "ops"}, batch_size=2)
    assert (created.success_count, updated.success_count) == (9, 14)
    assert deleted.success_count == 7

    stats = repo.cache_stats()
    assert stats is not None
    assert stats.invalidations == 1
    await assert_coherent(session_factory, config, queries)


# -- 2. the caller's transactions ---------------------------------------------------------------


async def test_reads_inside_a_writing_transaction_neither_serve_nor_fill(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = stack.config()
    queries = user_queries(ids)
    cached_before = await prime(session_factory, config, engine, queries)
    before = config.stats("users")

    async with session_factory() as session:
        repo = BaseRepository(User, session, config)
        async with rolled_back(session.begin()):
            await repo.update(ids[1], {"name": "uncommitted", "department": "ops"})
            inside = [
                plain(await getattr(repo, op)(*args, **kwargs)) for op, args, kwargs in queries
            ]
            # Its own write is visible: the reads went to the database, not the cache.
            assert (await repo.get(ids[1])).name == "uncommitted"
            assert ids[1] not in [row[0] for row in inside[0]]
            assert inside[2] == cached_before[2] - 1
    await config.settle()

    after = config.stats("users")
    assert after.bypasses - before.bypasses == len(queries) + 1
    assert (after.hits, after.misses, after.fills) == (before.hits, before.misses, before.fills)
    assert after.invalidations == before.invalidations, "rolled-back work invalidated"
    # Still cached (nothing committed changed), and still the committed values.
    assert await prime(session_factory, config, engine, queries) == cached_before
    if stack.is_redis:
        assert not [v for v in await stack.raw_values() if b"uncommitted" in v]


async def test_nothing_uncommitted_reaches_a_cold_cache(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = stack.config()

    async with session_factory() as session:
        repo = BaseRepository(User, session, config)
        async with rolled_back(session.begin()):
            ghost = await repo.create(person(99, name="ghost"))
            ghost_id = ghost.id
            await repo.bulk_update({"department": "eng"}, {"name": "ghost too"})
            queries = [*user_queries(ids), ("get", (ghost_id,), {})]
            for op, args, kwargs in queries:
                await getattr(repo, op)(*args, **kwargs)
            assert (await repo.get(ghost_id)).name == "ghost"
    await config.settle()

    stats = config.stats("users")
    assert stats.fills == 0
    assert stats.bypasses == len(queries) + 1
    assert stats.invalidations == 0
    if stack.is_redis:
        assert not [v for v in await stack.raw_values() if b"ghost" in v]
    assert await run(session_factory, config, ("get", (ghost_id,), {})) is None
    await assert_coherent(session_factory, config, queries)


async def test_a_rolled_back_savepoint_leaves_nothing_behind(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = stack.config()
    queries = user_queries(ids)
    cached_before = await prime(session_factory, config, engine, queries)

    async with session_factory() as session:
        repo = BaseRepository(User, session, config)
        async with session.begin():
            async with rolled_back(session.begin_nested()):
                await repo.update(ids[1], {"name": "ghost"})
                await repo.bulk_delete({"department": "eng"}, soft_delete=False)
                assert await repo.get(ids[1]) is None
                assert await repo.count(department="eng") == 0
            # Back in the outer transaction: the savepoint's work is gone.
            assert (await repo.get(ids[1])).name == "user 1"
            assert await repo.count(department="eng") == cached_before[2]
    await config.settle()

    assert config.stats("users").invalidations == 0, "rolled-back savepoint invalidated"
    assert await prime(session_factory, config, engine, queries) == cached_before
    if stack.is_redis:
        assert not [v for v in await stack.raw_values() if b"ghost" in v]


async def test_a_released_savepoint_invalidates_with_the_outer_commit_only(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = stack.config()
    queries = user_queries(ids)
    cached_before = await prime(session_factory, config, engine, queries)

    async with session_factory() as session:
        repo = BaseRepository(User, session, config)
        # Released savepoint, outer transaction rolled back: nothing happened.
        async with rolled_back(session.begin()), session.begin_nested():
            await repo.update(ids[1], {"name": "released then rolled back"})
        assert config.stats("users").invalidations == 0
        assert await prime(session_factory, config, engine, queries) == cached_before

        # Released savepoint, outer transaction committed: one invalidation, at the commit.
        async with session.begin():
            async with session.begin_nested():
                await repo.update(ids[1], {"name": "released and committed"})
            async with session.begin_nested():
                await repo.update(ids[2], {"salary": 0})
            assert config.stats("users").invalidations == 0
    assert config.stats("users").invalidations == 1
    assert (await run(session_factory, config, ("get", (ids[1],), {}))).name == (
        "released and committed"
    )
    await assert_coherent(session_factory, config, queries)


@pytest.mark.parametrize("style", ["context_manager", "explicit_commit"])
async def test_the_callers_commit_invalidates_before_it_returns(
    style: str, stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    writer_config, reader_config = stack.config(), stack.config()
    queries = user_queries(ids)
    cached_before = await prime(session_factory, reader_config, engine, queries)

    async with session_factory() as session:
        repo = BaseRepository(User, session, writer_config)
        if style == "context_manager":
            async with session.begin():
                await repo.update(ids[1], {"name": "committed"})
                await repo.bulk_update({"department": "eng"}, {"salary": 7}, batch_size=2)
                # Uncommitted: other readers still get the committed state, from the cache.
                with selects_on(engine) as log:
                    assert (
                        plain(await run(session_factory, reader_config, queries[4]))
                        == (cached_before[4])
                    )
                assert log.count == 0
                assert writer_config.stats("users").invalidations == 0
        else:
            await session.begin()
            await repo.update(ids[1], {"name": "committed"})
            await repo.bulk_update({"department": "eng"}, {"salary": 7}, batch_size=2)
            assert writer_config.stats("users").invalidations == 0
            await session.commit()
        # The commit has returned: the generation was bumped inside it, once.
        assert writer_config.stats("users").invalidations == 1

    # No settle, no sleep: another config's (another process's) next read sees the commit.
    assert (await run(session_factory, reader_config, queries[4])).name == "committed"
    await assert_coherent(session_factory, reader_config, queries)


# -- 3. the stale-set race, forced ----------------------------------------------------------------

RACED_QUERIES: dict[str, Callable[[list[int]], Query]] = {
    "get": lambda ids: ("get", (ids[1],), {}),
    "get_many": lambda ids: ("get_many", ([ids[1], ids[2]],), {}),
    "list": lambda ids: ("list", (), {"department": "eng"}),
    "count": lambda ids: ("count", (), {"department": "eng"}),
}


@pytest.mark.parametrize("operation", list(RACED_QUERIES))
async def test_a_fill_that_lost_the_race_with_a_write_is_rejected(
    operation: str, stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    # The fill waits at the gate for a while: give it the time budget to do so.
    config = stack.config(operation_timeout=10)
    gate = install_gate(config)
    query = RACED_QUERIES[operation](ids)

    # The reader misses, reads the old row and returns it; its fill waits at the gate.
    gate.arm()
    old = plain(await run(session_factory, config, query))
    await gate.wait_reached()
    # Meanwhile a writer commits and invalidates.
    async with session_factory() as session:
        moved = await BaseRepository(User, session, config).update(
            ids[1], {"name": "moved", "department": "ops"}
        )
        assert moved is not None
    new = await truth(session_factory, query)
    assert new != old
    # Now the reader stores what it read: refused.
    gate.open()
    await config.settle()

    stats = config.stats("users")
    assert (stats.stale_fills_rejected, stats.fills) == (1, 0)
    with selects_on(engine) as log:
        assert plain(await run(session_factory, config, query)) == new
    assert log.count == 1, "the rejected fill was served"
    await config.settle()
    with selects_on(engine) as log:
        assert plain(await run(session_factory, config, query)) == new
    assert log.count == 0, "the next fill did not land"


@pytest.mark.parametrize("stack_server", ["redis"], indirect=True)
async def test_a_fill_that_lost_the_race_is_rejected_for_every_process(
    stack: Stack, session_factory: Factory, db_url: str
) -> None:
    """The writer is another process: its own config, client, engine and sessions."""
    ids = await seed(session_factory)
    reader_config = stack.config(operation_timeout=10)
    gate = install_gate(reader_config)
    query = RACED_QUERIES["list"](ids)
    other_engine = create_engine(db_url)
    try:
        other_factory = async_sessionmaker(other_engine, expire_on_commit=False)
        gate.arm()
        old = plain(await run(session_factory, reader_config, query))
        await gate.wait_reached()
        async with other_factory() as session:
            await BaseRepository(User, session, stack.config()).bulk_update(
                {"department": "eng"}, {"salary": 0}
            )
        gate.open()
        await reader_config.settle()
        assert reader_config.stats("users").stale_fills_rejected == 1
        fresh = plain(await run(other_factory, stack.config(), query))
        assert fresh == await truth(session_factory, query) != old
    finally:
        await other_engine.dispose()


async def test_the_warmer_never_stores_a_result_a_write_overtook(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    warming = CacheWarmingConfig(enabled=True, min_usage_count=2, popular_queries_limit=5)
    config = stack.config(operation_timeout=10, warming_config=warming)
    gate = install_gate(config)
    query = RACED_QUERIES["list"](ids)
    for _ in range(3):
        await run(session_factory, config, query)
    await config.settle()
    popular = config.get_popular_queries()
    assert [(usage.operation, usage.spec and usage.spec.get("filters")) for usage in popular] == [
        ("list", {"department": "eng"})
    ]

    async with session_factory() as session:
        writer = BaseRepository(User, session, config)
        await writer.update(ids[1], {"department": "ops"})  # the cached list is now stale
        # The warmer replays the query, reads the database, and is held before its fill...
        gate.arm()
        warming_task = asyncio.create_task(writer.warm_cache())
        await gate.wait_reached()
        # ...while another write commits.
        await writer.update(ids[2], {"department": "ops"})
        gate.open()
        report = await warming_task

    assert (report.warmed, report.already_cached) == (0, 0)
    assert config.stats("users").stale_fills_rejected == 1
    listed = plain(await run(session_factory, config, query))
    assert listed == await truth(session_factory, query)
    assert {ids[1], ids[2]}.isdisjoint(row[0] for row in listed)

    # With no write racing it, the warmer stores the current rows.
    async with AsyncSession(engine) as session:
        report = await BaseRepository(User, session, config).warm_cache()
    assert report.warmed + report.already_cached == 1
    with selects_on(engine) as log:
        assert plain(await run(session_factory, config, query)) == listed
    assert log.count == 0


@pytest.fixture
async def snapshot_factory(
    engine: AsyncEngine, session_factory: Factory, tmp_path: Path
) -> AsyncIterator[Factory]:
    """Sessions on a database where a reader's snapshot can fall behind another connection's
    commit: the test database, except SQLite, where that needs WAL mode (in the default
    journal mode readers block writers), so SQLite gets a WAL file of its own."""
    if engine.dialect.name != "sqlite":
        yield session_factory
        return
    wal_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")

    @event.listens_for(wal_engine.sync_engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    try:
        async with wal_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield async_sessionmaker(wal_engine, expire_on_commit=False)
    finally:
        await wal_engine.dispose()


async def test_single_flight_never_shares_rows_from_an_older_snapshot(
    stack: Stack, snapshot_factory: Factory
) -> None:
    """A reader in a REPEATABLE READ (SQLite: SERIALIZABLE) transaction may read rows older
    than the generation it read; it must not fill the cache with them, and it must not hand
    them to concurrent readers that started after the write committed either."""
    session_factory = snapshot_factory
    ids = await seed(session_factory)
    config = stack.config(operation_timeout=10, lease_after_seconds=0)
    query: Query = ("get", (ids[1],), {})
    async with session_factory() as old_reader:
        await old_reader.begin()
        if old_reader.bind.dialect.name != "sqlite":  # type: ignore[union-attr]
            await old_reader.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        await old_reader.execute(select(User.id))  # the snapshot starts here
        async with session_factory() as session:
            await BaseRepository(User, session, config).update(ids[1], {"name": "new"})
        # The leader's lease request waits at the gate, which keeps its flight open (a slow
        # query would, too) while a later reader arrives.
        gate = install_gate(config, "acquire_lease")
        gate.arm()
        leader = asyncio.create_task(BaseRepository(User, old_reader, config).get(ids[1]))
        await gate.wait_reached()
        # This reader starts after the write committed: it must see it.
        late = plain(await run(session_factory, config, query))
        gate.open()
        assert (await leader).name == "user 1"  # what its snapshot holds: right for it
        await old_reader.rollback()
    await config.settle()
    assert late == await truth(session_factory, query), "served a row older than the write"
    assert plain(await run(session_factory, config, query)) == await truth(session_factory, query)


@pytest.mark.parametrize("pattern", ["*", "list:*"])
async def test_invalidate_cache_after_a_change_behind_the_repositorys_back_is_not_undone(
    pattern: str, stack: Stack, session_factory: Factory
) -> None:
    """The documented remedy for raw SQL writes, raced by a reader that read before them.
    Whatever the pattern, invalidate_cache moves the generation after deleting, so the
    held fill is refused."""
    ids = await seed(session_factory)
    config = stack.config(operation_timeout=10)
    gate = install_gate(config)
    query = RACED_QUERIES["list"](ids)

    gate.arm()
    old = plain(await run(session_factory, config, query))
    await gate.wait_reached()
    async with session_factory() as session:
        await session.execute(update(User).where(User.id == ids[1]).values(department="ops"))
        await session.commit()
        await BaseRepository(User, session, config).invalidate_cache(pattern)
    gate.open()
    await config.settle()
    assert config.stats("users").stale_fills_rejected == 1

    new = await truth(session_factory, query)
    assert new != old
    assert plain(await run(session_factory, config, query)) == new


# -- 4. other processes -------------------------------------------------------------------------


@with_cluster
async def test_other_processes_see_every_invalidation_at_once(
    stack: Stack, session_factory: Factory, engine: AsyncEngine, db_url: str
) -> None:
    """A and B share only the cache's server and the database: separate configs, clients,
    engines and sessions. Each write by one is seen by the other's very next read."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    config_a, config_b = stack.config(), stack.config()
    engine_b = create_engine(db_url)
    try:
        factory_b = async_sessionmaker(engine_b, expire_on_commit=False)
        writes: list[tuple[Factory, Any, Callable[[Repo], Awaitable[Any]]]] = [
            (session_factory, config_a, lambda r: r.update(ids[1], {"name": "by a"})),
            (factory_b, config_b, lambda r: r.bulk_update({"department": "eng"}, {"salary": 9})),
            (session_factory, config_a, lambda r: r.delete(ids[2])),
            (factory_b, config_b, lambda r: r.create(person(50))),
        ]
        for factory, config, write in writes:
            # Both have everything cached (proved by zero SELECTs)...
            await prime(session_factory, config_a, engine, queries)
            await prime(factory_b, config_b, engine_b, queries)
            async with factory() as session:
                await write(BaseRepository(User, session, config))
            # ...and right after the write, neither serves the old state.
            await assert_coherent(session_factory, config_a, queries)
            await assert_coherent(factory_b, config_b, queries)
    finally:
        await engine_b.dispose()


# -- 5. stampede ---------------------------------------------------------------------------------


@with_cluster
async def test_a_hundred_concurrent_cold_lists_run_one_query(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    await seed(session_factory, count=30)
    config = stack.config(operation_timeout=5)
    query: Query = ("list", (), {"is_active": True, "order_by": "name", "limit": 20})
    # A new RedisCluster client maps the slots on its first command; redis-py 8.1 fails some
    # of a burst of commands sent before that ('NoneType' object has no attribute
    # 'writelines'), which would turn them into misses that each read the database.
    assert await config.backend.ping()

    with selects_on(engine) as log:
        results = await asyncio.gather(*(run(session_factory, config, query) for _ in range(100)))
    assert log.count == 1, f"{log.count} queries for one cold list"
    expected = await truth(session_factory, query)
    assert len(expected) == 20
    assert all(plain(rows) == expected for rows in results)
    # Every caller got instances of its own.
    assert len({id(rows[0]) for rows in results}) == 100
    stats = config.stats("users")
    assert (stats.misses, stats.hits) == (1, 99)


class _LateColdRead:
    """The config's real backend, with two cold reads ordered the unlucky way: both read "no
    generation", but the second one's answer reaches its caller only after the first caller
    has created the generation (as happens in a burst over many connections)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads = 0
        self.bumps = 0
        self._second_read = asyncio.Event()
        self._bumped = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read_with_lease(self, *args: Any) -> Any:
        self.reads += 1
        mine = self.reads
        answer = await self._inner.read_with_lease(*args)
        if mine == 1:
            await asyncio.wait_for(self._second_read.wait(), 5)  # both read before the bump
        elif mine == 2:
            self._second_read.set()
            await asyncio.wait_for(self._bumped.wait(), 5)
            await asyncio.sleep(0.05)  # ...and the first caller's creation has completed
        return answer

    async def bump(self, generation_key: str) -> int:
        self.bumps += 1
        generation: int = await self._inner.bump(generation_key)
        self._bumped.set()
        return generation


@with_cluster
async def test_a_cold_read_answered_after_the_generation_was_created_joins_it(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    """Both readers found no generation; the first created it. The second must use that
    one (and share the first one's query), not bump again: a second generation would run a
    second query and get the first reader's fill refused."""
    await seed(session_factory, count=5)
    config = stack.config(operation_timeout=5)
    assert await config.backend.ping()
    late = _LateColdRead(config.backend)
    config.backend = late
    gate = install_gate(config)  # holds the fill, so the first reader's flight stays open
    query: Query = ("list", (), {"order_by": "name"})

    gate.arm()
    with selects_on(engine) as log:
        results = await asyncio.gather(*(run(session_factory, config, query) for _ in range(2)))
    gate.open()
    await config.settle()

    assert (late.reads, late.bumps) == (2, 1)
    assert log.count == 1, log.statements
    expected = await truth(session_factory, query)
    assert [plain(rows) for rows in results] == [expected, expected]
    stats = config.stats("users")
    assert (stats.misses, stats.hits, stats.fills, stats.stale_fills_rejected) == (1, 1, 1, 0)
    with selects_on(engine) as log:
        assert plain(await run(session_factory, config, query)) == expected
    assert log.count == 0


# -- 7. pattern invalidation on a cluster ---------------------------------------------------------


@pytest.mark.parametrize("stack_server", ["cluster"], indirect=True)
async def test_pattern_invalidation_reaches_every_node_and_nothing_else(
    stack: Stack, session_factory: Factory, engine: AsyncEngine
) -> None:
    cluster = stack.server
    assert isinstance(cluster, RedisCluster)
    nodes = {
        table: cluster.get_node_from_key(f"{stack.prefix}:v1:{{{table}}}:x").name
        for table in ("users", "articles")
    }
    assert nodes["users"] != nodes["articles"], f"both models on one node: {nodes}"

    ids = await seed(session_factory, count=6)
    async with session_factory() as session:
        for i in range(4):
            await BaseRepository(Article, session).create({"id": i + 1, "title": f"a{i}"})
    mine, other_prefix = stack.config(), stack.config(key_prefix=f"{stack.prefix}-other")
    user_reads: list[Query] = [
        ("list", (), {"department": "eng"}),
        ("count", (), {}),
        ("get", (ids[1],), {}),
        ("get_many", ([ids[0], ids[1]],), {}),
    ]
    article_reads: list[Query] = [("list", (), {}), ("get", (2,), {}), ("count", (), {})]

    async def cached(config: Any, model: type[Any], reads: list[Query]) -> list[bool]:
        """Which reads are served without the database."""
        await config.settle()
        served = []
        for query in reads:
            with selects_on(engine) as log:
                result = plain(await run(session_factory, config, query, model))
            assert result == await truth(session_factory, query, model)
            served.append(log.count == 0)
        return served

    async def prime_all() -> None:
        await prime(session_factory, mine, engine, user_reads)
        await prime(session_factory, mine, engine, article_reads, Article)
        await prime(session_factory, other_prefix, engine, user_reads)

    async def invalidate(model: type[Any], pattern: str) -> int:
        async with session_factory() as session:
            return await BaseRepository(model, session, mine).invalidate_cache(pattern)

    async def stored(table: str) -> list[str]:
        """The kinds of entry stored for one of my models, straight from every node."""
        keys = await stack.raw_keys(f"v1:{{{table}}}:*")
        return sorted(key.split(":")[3] for key in keys if "~" not in key.split(":", 3)[3])

    everything = {
        "users": ["count", "get", "get_many", "list"],
        "articles": ["count", "get", "list"],
    }

    # The pattern decides which keys are deleted, on whichever node holds them; the model's
    # generation always moves, so all its queries (and only its own) are read again.
    await prime_all()
    assert {table: await stored(table) for table in everything} == everything
    assert await invalidate(User, "list:*") == 1
    assert await stored("users") == ["count", "get", "get_many"]
    assert await stored("articles") == everything["articles"]
    assert await cached(mine, User, user_reads) == [False] * 4
    assert await cached(mine, Article, article_reads) == [True, True, True]
    assert await cached(other_prefix, User, user_reads) == [True] * 4

    await prime_all()
    assert await invalidate(Article, "list:*") == 1  # the other node
    assert await stored("articles") == ["count", "get"]
    assert await stored("users") == everything["users"]
    assert await cached(mine, Article, article_reads) == [False] * 3
    assert await cached(mine, User, user_reads) == [True] * 4

    await prime_all()
    assert await invalidate(User, "get:*") == 1  # not get_many:
    assert await stored("users") == ["count", "get_many", "list"]
    assert await cached(mine, User, user_reads) == [False] * 4
    assert await cached(mine, Article, article_reads) == [True] * 3
    assert await cached(other_prefix, User, user_reads) == [True] * 4

    await prime_all()
    assert await invalidate(User, "*") == 4
    # The keys themselves: none of my users' entries is left; the rest is untouched.
    assert not [
        key for key in await stack.raw_keys("v1:{users}:*") if "~" not in key.split(":", 3)[3]
    ]
    assert await stack.raw_keys("v1:{articles}:list:*")
    assert await cached(mine, User, user_reads) == [False] * 4
    assert await cached(mine, Article, article_reads) == [True] * 3
    assert await cached(other_prefix, User, user_reads) == [True] * 4
