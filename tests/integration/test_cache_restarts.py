"""Generations never go backwards or repeat: after Redis restarts from an old snapshot, restarts
empty, or is flushed, no entry written before a committed write is served after that write
returned, through the writer's config or any other (another process, as far as the cache can
tell), and every later generation is above every one handed out before.

Each test runs its own ``redis-server`` (``spare_redis``), saves snapshots of it (``SAVE``, a
copy of the RDB file), kills it (SIGKILL) and starts it again on an old copy. Clients are
redis-py's defaults (they reconnect and retry on their own, so a restart reaches the cache as
no error at all: the hard case). Nothing sleeps: each step waits for the server itself.

The database plays no part in this (the generations live in Redis; every database passes the
same reads through the same cache code, which ``test_cache_outages`` covers on all three), so
these run on SQLite only, to keep them fast.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baserepo import BaseRepository, CacheConfig
from tests.integration.cache_coherence_support import (
    Clock,
    Factory,
    Query,
    person,
    plain,
    prime,
    run,
    seed,
    truth,
    user_queries,
)
from tests.models import User
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

IDENTITY_CHECK_SECONDS = 1.0  # RedisBackend's default
READS_PER_QUERY = 3


class Fleet:
    """Configs on one spare Redis, each with a client of its own (each a process), sharing a
    clock the test can move ahead; and raw access to the server."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.prefix = f"brrst-{uuid.uuid4().hex[:12]}"
        self.clock = Clock()
        self.clients: list[Redis] = []

    def config(self) -> CacheConfig:
        client = Redis(host="127.0.0.1", port=self.server.port)
        self.clients.append(client)
        return CacheConfig(redis_client=client, key_prefix=self.prefix, clock=self.clock)

    async def generation(self) -> int:
        """The users generation as stored (0 if there is none)."""
        async with Redis(host="127.0.0.1", port=self.server.port) as raw:
            value = await raw.get(f"{self.prefix}:v1:{{users}}:~gen")
            return 0 if value is None else int(value)

    async def run_ahead(self, seconds: float) -> None:
        """Set the stored generation ``seconds`` ahead of the server's clock, as one handed
        out by a server whose clock was ahead (before a failover), or by bumps faster than
        one a microsecond."""
        async with Redis(host="127.0.0.1", port=self.server.port) as raw:
            now, micros = await raw.time()
            ahead = (now + int(seconds)) * 1_000_000 + micros
            await raw.set(f"{self.prefix}:v1:{{users}}:~gen", ahead)

    async def flushall(self) -> None:
        async with Redis(host="127.0.0.1", port=self.server.port) as raw:
            await raw.flushall()

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def fleet(spare_redis: RedisServer) -> AsyncIterator[Fleet]:
    opened = Fleet(spare_redis)
    try:
        yield opened
    finally:
        await opened.close()


async def write(factory: Factory, config: CacheConfig, ids: list[int], name: str) -> None:
    """Writes that change what every query of ``user_queries`` returns: ``ids[1]`` gets a
    new name and the highest salary, and a new engineer joins."""
    async with factory() as session:
        repo = BaseRepository(User, session, config)
        salary = 10_000 + await repo.count()
        assert await repo.update(ids[1], {"name": name, "salary": salary})
        assert await repo.create(person(salary, department="eng"))


async def stale_reads(factory: Factory, config: CacheConfig, queries: list[Query]) -> list[Any]:
    """Each query read ``READS_PER_QUERY`` times through ``config``; the reads whose result
    differs from the database's."""
    stale = []
    for query in queries:
        expected = await truth(factory, query)
        for _ in range(READS_PER_QUERY):
            cached = plain(await run(factory, config, query))
            if cached != expected:
                stale.append((query, cached, expected))
        await config.settle()
    return stale


async def test_a_restart_from_a_snapshot_older_than_a_write_serves_nothing_from_before_it(
    fleet: Fleet, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """The issue's reproduction: save, write through the library, kill -9, restore the old
    dump.rdb, restart. The snapshot holds the old generation and entries stored under it,
    which the write's bump (lost with the restore) had retired."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer, bystander = fleet.config(), fleet.config()
    await write(session_factory, writer, ids, "before the snapshot")
    cached_before = await prime(session_factory, writer, engine, queries)
    await prime(session_factory, bystander, engine, queries)
    old = spare_redis.snapshot()
    handed_out = await fleet.generation()

    await write(session_factory, writer, ids, "after the snapshot")
    lost = await fleet.generation()
    assert lost > handed_out
    assert [await truth(session_factory, q) for q in queries] != cached_before

    spare_redis.restart_from(old)
    assert await fleet.generation() == handed_out, "the restore brought the old counter back"

    # The writer, and a process that starts after the restart: not one stale read.
    assert await stale_reads(session_factory, writer, queries) == []
    assert await stale_reads(session_factory, fleet.config(), queries) == []
    assert await stale_reads(session_factory, bystander, queries) == []
    # The generation moved past every number handed out before, the lost one included, and
    # the cache works again.
    assert await fleet.generation() > lost
    await prime(session_factory, writer, engine, queries)
    assert await stale_reads(session_factory, fleet.config(), queries) == []


async def test_a_process_that_never_saw_the_lost_generation_notices_the_new_server_run(
    fleet: Fleet, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """The bystander cached the old entries before the write and never read the generation
    the write made; its client reconnects to the restored server without an error. It is the
    first to read after the restore (no one has bumped yet), and it notices the new server
    run at its next identity check: here the first one due once IDENTITY_CHECK_SECONDS
    passed, which any restart that takes that long (loading a snapshot) guarantees."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer, bystander = fleet.config(), fleet.config()
    await write(session_factory, writer, ids, "before the snapshot")
    await prime(session_factory, bystander, engine, queries)
    old = spare_redis.snapshot()
    await write(session_factory, writer, ids, "after the snapshot")
    spare_redis.restart_from(old)

    fleet.clock.advance(IDENTITY_CHECK_SECONDS)
    assert await stale_reads(session_factory, bystander, queries) == []
    assert await stale_reads(session_factory, writer, queries) == []


async def test_a_process_whose_client_reconnected_silently_reads_the_new_run_at_once(
    fleet: Fleet, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """As above, with no identity check due (the clock does not move): the bystander's
    client reconnects to the restored server without an error, and that reconnect alone
    makes it read the server's identity before serving anything."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer, bystander = fleet.config(), fleet.config()
    await write(session_factory, writer, ids, "before the snapshot")
    await prime(session_factory, bystander, engine, queries)
    old = spare_redis.snapshot()
    await write(session_factory, writer, ids, "after the snapshot")
    spare_redis.restart_from(old)

    assert await stale_reads(session_factory, bystander, queries) == []
    assert bystander.stats().backend_errors == 0  # the reconnect reached it as no error


@pytest.mark.parametrize("clock", ["in_step", "behind_the_generations"])
async def test_a_flushall_after_a_write_serves_nothing_stale_and_bumps_above_every_earlier(
    clock: str, fleet: Fleet, session_factory: Factory, engine: AsyncEngine
) -> None:
    """``behind_the_generations``: the numbers handed out before the flush are ahead of the
    server's clock (a server whose clock was ahead before a failover): a generation created
    from the clock alone would go back below them."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer = fleet.config()
    await write(session_factory, writer, ids, "first")
    if clock == "behind_the_generations":
        await fleet.run_ahead(3600)
    await prime(session_factory, writer, engine, queries)
    await write(session_factory, writer, ids, "second")
    await prime(session_factory, writer, engine, queries)
    handed_out = await fleet.generation()

    await fleet.flushall()
    assert await fleet.generation() == 0
    assert await stale_reads(session_factory, writer, queries) == []
    assert await stale_reads(session_factory, fleet.config(), queries) == []
    recreated = await fleet.generation()
    assert recreated > handed_out

    await fleet.flushall()
    await write(session_factory, writer, ids, "third")
    assert await fleet.generation() > recreated
    assert await stale_reads(session_factory, fleet.config(), queries) == []


@pytest.mark.parametrize("clock", ["in_step", "behind_the_generations"])
async def test_a_restart_with_an_empty_dataset_serves_nothing_stale(
    clock: str,
    fleet: Fleet,
    spare_redis: RedisServer,
    session_factory: Factory,
    engine: AsyncEngine,
) -> None:
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer = fleet.config()
    await write(session_factory, writer, ids, "first")
    if clock == "behind_the_generations":
        await fleet.run_ahead(3600)
    await prime(session_factory, writer, engine, queries)
    handed_out = await fleet.generation()

    spare_redis.restart()
    assert await fleet.generation() == 0
    await write(session_factory, writer, ids, "second")
    assert await fleet.generation() > handed_out
    assert await stale_reads(session_factory, writer, queries) == []
    assert await stale_reads(session_factory, fleet.config(), queries) == []


async def test_a_generation_never_repeats_across_restarts_from_old_snapshots(
    fleet: Fleet, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """Snapshots taken along the way, restored out of order, a restart empty: every
    generation the cache hands out is above every one handed out before it."""
    ids = await seed(session_factory)
    queries = user_queries(ids)
    writer = fleet.config()
    handed_out: list[int] = []
    snapshots = []

    async def write_and_record(name: str) -> None:
        await write(session_factory, writer, ids, name)
        handed_out.append(await fleet.generation())

    for round_ in range(3):
        await write_and_record(f"round {round_}")
        await prime(session_factory, writer, engine, queries)
        snapshots.append(spare_redis.snapshot())
        await write_and_record(f"round {round_}, after its snapshot")
    for step, snapshot in enumerate([snapshots[1], snapshots[0], snapshots[2], None]):
        if snapshot is None:
            spare_redis.restart()
        else:
            spare_redis.restart_from(snapshot)
        # A new process, every time: it must not be served the snapshot's entries.
        assert await stale_reads(session_factory, fleet.config(), queries) == []
        await write_and_record(f"after restore {step}")
        assert await stale_reads(session_factory, writer, queries) == []

    assert handed_out == sorted(set(handed_out)), handed_out
