"""Redis trouble never fails a repository call, and never lets an entry that a missed
invalidation should have killed be served once Redis is back.

Each test starts from real servers: a port nothing listens on, or a ``redis-server`` of its own
(``spare_redis``) that it pauses (SIGSTOP: the port stays open, nothing answers), resumes, kills
and restarts. Clients get no retries and short timeouts; the config a short
``operation_timeout``, and a clock the test moves ahead so the circuit breaker resets without
sleeping.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baserepo import BaseRepository, CacheConfig
from baserepo.cache import BreakerState
from tests.integration.cache_coherence_support import (
    Clock,
    Factory,
    Query,
    assert_coherent,
    install_gate,
    no_retry_client,
    person,
    plain,
    prime,
    run,
    seed,
    truth,
    user_queries,
)
from tests.models import User
from tests.redis_servers import RedisServer, free_port

OPERATION_TIMEOUT = 0.05
BREAKER_RESET = 5.0


class Outage:
    """Configs on one spare Redis (each with its own client: another process), the clock
    they share, and raw access to the server for checks."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.prefix = f"brout-{uuid.uuid4().hex[:12]}"
        self.clock = Clock()
        self.clients: list[Redis] = []

    def config(self, client_timeout: float = 0.05, **options: Any) -> CacheConfig:
        client = no_retry_client(self.port, timeout=client_timeout)
        self.clients.append(client)
        options = {
            "key_prefix": self.prefix,
            "operation_timeout": OPERATION_TIMEOUT,
            "breaker_threshold": 3,
            "breaker_reset_seconds": BREAKER_RESET,
            "clock": self.clock,
            **options,
        }
        return CacheConfig(redis_client=client, **options)

    async def generation(self) -> bytes | None:
        """The users generation as stored (key scheme of docs/cache.md)."""
        async with Redis(host="127.0.0.1", port=self.port) as raw:
            value: bytes | None = await raw.get(f"{self.prefix}:v1:{{users}}:~gen")
            return value

    def let_breaker_reset(self) -> None:
        self.clock.advance(BREAKER_RESET + 1)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def outage(spare_redis: RedisServer) -> AsyncIterator[Outage]:
    opened = Outage(spare_redis.port)
    try:
        yield opened
    finally:
        await opened.close()


async def write_through(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    """A write through the cache, so the model has a generation in Redis."""
    async with factory() as session:
        assert await BaseRepository(User, session, config).update(ids[-1], {"salary": 0})


async def every_kind_of_call(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    """Each repository call, with its result checked against the database."""
    async with factory() as session:
        repo = BaseRepository(User, session, config)
        uncached = BaseRepository(User, session)
        created = await repo.create(person(77))
        assert (await repo.update(created.id, {"name": "updated"})).name == "updated"
        assert await repo.delete(created.id)
        assert (await repo.restore(created.id)).name == "updated"
        assert (await repo.bulk_create([person(80 + i) for i in range(3)])).success_count == 3
        engineers = await uncached.count(department="eng")
        updated = await repo.bulk_update({"department": "eng"}, {"salary": 1})
        assert updated.success_count == engineers > 0
        assert (await repo.bulk_delete({"department": "ops"}, batch_size=2)).error_count == 0
        assert await repo.delete(ids[1], soft_delete=False)
        assert await repo.invalidate_cache("list:*") == 0
        report = await repo.warm_cache()
        assert report.warmed == 0
    await assert_coherent(factory, config, user_queries(ids))


async def test_redis_at_a_closed_port_fails_no_call_and_the_breaker_skips_it(
    session_factory: Factory,
) -> None:
    clock = Clock()
    client = no_retry_client(free_port())
    config = CacheConfig(
        redis_client=client,
        key_prefix=f"brout-{uuid.uuid4().hex[:12]}",
        operation_timeout=OPERATION_TIMEOUT,
        breaker_threshold=3,
        breaker_reset_seconds=BREAKER_RESET,
        clock=clock,
    )
    try:
        ids = await seed(session_factory)
        await every_kind_of_call(session_factory, config, ids)

        stats = config.stats("users")
        assert stats.backend_errors >= 3
        assert stats.breaker_state is BreakerState.OPEN
        assert stats.untrusted_models == ("users",)
        assert stats.hits == stats.fills == 0

        # While open, the cache is skipped without a single call to Redis (so without
        # waiting on it: no call, no error).
        errors = stats.backend_errors
        await assert_coherent(session_factory, config, user_queries(ids) * 3)
        assert config.stats("users").backend_errors == errors

        # After the reset time, one trial call; it fails, and the breaker opens again.
        clock.advance(BREAKER_RESET + 1)
        assert config.stats().breaker_state is BreakerState.HALF_OPEN
        await assert_coherent(session_factory, config, user_queries(ids))
        assert config.stats("users").backend_errors == errors + 1
        assert config.stats().breaker_state is BreakerState.OPEN
    finally:
        await client.aclose()


@pytest.mark.parametrize("breaker", ["open_before_the_write", "closed_during_the_write"])
async def test_a_paused_redis_fails_no_call_and_serves_nothing_from_before_it(
    breaker: str,
    outage: Outage,
    spare_redis: RedisServer,
    session_factory: Factory,
    engine: AsyncEngine,
) -> None:
    ids = await seed(session_factory)
    threshold = 3 if breaker == "open_before_the_write" else 1000
    config = outage.config(breaker_threshold=threshold)
    queries = user_queries(ids)
    await write_through(session_factory, config, ids)
    cached_before = await prime(session_factory, config, engine, queries)
    generation = await outage.generation()
    assert generation is not None

    spare_redis.pause()
    try:
        # Reads time out (each within the budget) and go to the database.
        started = time.perf_counter()
        await assert_coherent(session_factory, config, queries)
        assert time.perf_counter() - started < len(queries) * (OPERATION_TIMEOUT + 0.2)
        assert config.stats("users").backend_errors >= 3
        expected_state = BreakerState.OPEN if threshold == 3 else BreakerState.CLOSED
        assert config.stats().breaker_state is expected_state

        # A write commits; its invalidation cannot be delivered.
        async with session_factory() as session:
            updated = await BaseRepository(User, session, config).update(
                ids[1], {"name": "written while Redis hung", "department": "ops"}
            )
            assert updated is not None
        stats = config.stats("users")
        assert stats.invalidation_failures == 1
        assert stats.untrusted_models == ("users",)
        await assert_coherent(session_factory, config, queries)
    finally:
        spare_redis.resume()

    if breaker == "open_before_the_write":
        # The bump was never sent: every entry from before the pause is still current in
        # Redis, and would be served by anyone trusting it.
        assert await outage.generation() == generation
        # The breaker is still open: the cache is skipped, the answers are right.
        await assert_coherent(session_factory, config, queries)
        outage.let_breaker_reset()

    # Redis is back: no entry from before the outage is served...
    await assert_coherent(session_factory, config, queries)
    after = config.stats("users")
    assert after.untrusted_models == ()
    assert after.breaker_state is BreakerState.CLOSED
    # ...and the cache works again, with the new values.
    fresh = await prime(session_factory, config, engine, queries)
    assert fresh == [await truth(session_factory, query) for query in queries]
    assert fresh != cached_before


async def test_a_killed_and_restarted_redis_fails_no_call_and_serves_nothing_stale(
    outage: Outage, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    ids = await seed(session_factory)
    config = outage.config()
    queries = user_queries(ids)
    await prime(session_factory, config, engine, queries)

    spare_redis.kill()
    await every_kind_of_call(session_factory, config, ids)
    assert config.stats("users").untrusted_models == ("users",)
    assert config.stats().breaker_state is BreakerState.OPEN

    spare_redis.restart()
    await assert_coherent(session_factory, config, queries)  # breaker still open
    outage.let_breaker_reset()
    await assert_coherent(session_factory, config, queries)
    assert config.stats("users").untrusted_models == ()
    assert config.stats().breaker_state is BreakerState.CLOSED
    fresh = await prime(session_factory, config, engine, queries)
    assert fresh == [await truth(session_factory, query) for query in queries]


async def test_the_writers_next_read_after_an_outage_repairs_the_cache_for_everyone(
    outage: Outage, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """Process B never saw the outage that made A's invalidation fail. Once A has used the
    model's cache again, B does not serve the entry A's write should have killed."""
    ids = await seed(session_factory)
    writer, bystander = outage.config(), outage.config()
    queries = user_queries(ids)
    await write_through(session_factory, writer, ids)
    await prime(session_factory, bystander, engine, queries)
    generation = await outage.generation()

    spare_redis.pause()
    try:
        # Reads open the writer's breaker, so its invalidation is not even sent.
        await assert_coherent(session_factory, writer, queries[:3])
        assert writer.stats().breaker_state is BreakerState.OPEN
        async with session_factory() as session:
            assert await BaseRepository(User, session, writer).update(ids[1], {"name": "new"})
    finally:
        spare_redis.resume()
    assert writer.stats("users").untrusted_models == ("users",)
    assert await outage.generation() == generation  # the old entries are still current
    outage.let_breaker_reset()

    # The writer's next cache call on the model makes the cache safe again...
    query: Query = ("get", (ids[1],), {})
    assert (await run(session_factory, writer, query)).name == "new"
    assert writer.stats("users").untrusted_models == ()
    # ...for the bystander too.
    await assert_coherent(session_factory, bystander, queries)


async def test_bump_retry_seconds_makes_a_write_wait_for_redis_and_leaves_nothing_stale(
    outage: Outage, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """The writer's breaker is open when it writes, and Redis comes back 0.5 s later (a
    failover, or a bystander whose breaker closed sooner): with ``bump_retry_seconds`` the
    write retries its bump past the breaker and returns once it landed, so the bystander,
    who never saw the outage, serves nothing from before the write."""
    ids = await seed(session_factory)
    writer, bystander = outage.config(bump_retry_seconds=5.0), outage.config()
    queries = user_queries(ids)
    await write_through(session_factory, writer, ids)
    await prime(session_factory, bystander, engine, queries)
    generation = await outage.generation()

    spare_redis.pause()
    resumed = asyncio.get_running_loop().call_later(0.5, spare_redis.resume)
    try:
        await assert_coherent(session_factory, writer, queries[:3])
        assert writer.stats().breaker_state is BreakerState.OPEN
        started = time.monotonic()
        async with session_factory() as session:
            assert await BaseRepository(User, session, writer).update(ids[1], {"name": "new"})
        waited = time.monotonic() - started
    finally:
        resumed.cancel()
        spare_redis.resume()
    assert 0 < waited < 5.0
    assert await outage.generation() != generation
    stats = writer.stats("users")
    assert (stats.invalidation_failures, stats.untrusted_models) == (0, ())
    assert writer.stats().breaker_state is BreakerState.CLOSED
    await assert_coherent(session_factory, bystander, queries)


@pytest.mark.parametrize(
    "hold",
    [
        "fill_decided_after_the_failed_invalidation",
        "fill_in_flight_at_a_generation",
        "fill_in_flight_at_generation_zero",
    ],
)
async def test_a_fill_held_across_a_restart_is_not_served_to_another_process(
    hold: str,
    outage: Outage,
    spare_redis: RedisServer,
    session_factory: Factory,
    engine: AsyncEngine,
) -> None:
    """A reader of process A reads the old row; Redis dies; A's write cannot invalidate;
    Redis comes back empty; only then does A's reader get to store the old row. Process B,
    which saw nothing of this, must not be served it.

    The reader is held either before it decides to fill (its lease request waits) or with
    its fill already on the way to Redis; the model either has a generation in Redis from an
    earlier write, or none yet (generation 0: the reader creates one from the clock before
    its query, and a fill needs that generation to still exist, which the restart undid).
    """
    ids = await seed(session_factory)
    # The reader waits at the gate: give it a longer time budget (the client's own socket
    # timeout still fails calls to a dead server fast). lease_after_seconds=0: every miss
    # asks for a lease, which the first variant holds.
    writer = outage.config(operation_timeout=5, lease_after_seconds=0)
    bystander = outage.config()
    if hold == "fill_in_flight_at_a_generation":
        await write_through(session_factory, writer, ids)
    if hold == "fill_decided_after_the_failed_invalidation":
        gate = install_gate(writer, "acquire_lease")
    else:
        gate = install_gate(writer, "fill", "fill_and_release")
    query: Query = ("get", (ids[1],), {})

    gate.arm()
    old = plain(await run(session_factory, writer, query))
    await gate.wait_reached()
    spare_redis.kill()
    async with session_factory() as session:
        assert await BaseRepository(User, session, writer).update(ids[1], {"name": "new"})
    assert writer.stats("users").untrusted_models == ("users",)
    spare_redis.restart()
    outage.let_breaker_reset()
    gate.open()
    await writer.settle()

    new = await truth(session_factory, query)
    assert new != old
    assert plain(await run(session_factory, bystander, query)) == new, "served the held fill"
    assert plain(await run(session_factory, writer, query)) == new
    assert plain(await run(session_factory, bystander, query)) == new


async def test_a_cancelled_trial_call_does_not_switch_the_cache_off_for_good(
    outage: Outage, spare_redis: RedisServer, session_factory: Factory, engine: AsyncEngine
) -> None:
    """The breaker lets one trial call through after its reset time. If the caller is
    cancelled meanwhile (a request deadline shorter than the time budget), that trial has no
    outcome: a later one must still be allowed, or the cache stays off until restart."""
    ids = await seed(session_factory)
    config = outage.config(client_timeout=2, operation_timeout=0.5, breaker_threshold=1)
    query: Query = ("get", (ids[1],), {})

    spare_redis.pause()
    try:
        await run(session_factory, config, query)
        assert config.stats().breaker_state is BreakerState.OPEN
        outage.let_breaker_reset()
        # The trial call hangs on the paused server; the caller gives up first.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run(session_factory, config, query), 0.2)
    finally:
        spare_redis.resume()

    outage.let_breaker_reset()
    await prime(session_factory, config, engine, [query])
    assert config.stats().breaker_state is BreakerState.CLOSED
    assert config.stats("users").hits >= 1
