"""What the application processes of ``test_cache_sentinel`` run: each is a separate OS process
(``multiprocessing`` spawn) with its own engine, its own ``Sentinel(...).master_for(...)`` client
and its own ``CacheConfig``, as a real deployment has.

Times are ``time.monotonic()``, which on Linux is one clock for every process of the machine, so
the test can order one process's reads after another's writes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio.sentinel import Sentinel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig, create_engine
from baserepo.cache._redis import RedisBackend
from tests.models import User

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

SERVICE = "mymaster"
CLIENT_TIMEOUT = 0.25
WRITE_SHARE = 0.03
WRITER_SHARE = 0.5  # process 0 writes mostly


def sentinel_client(addresses: list[tuple[str, int]]) -> Any:
    """The client the docs recommend: redis-py's Sentinel, its master_for as redis_client."""
    sentinel = Sentinel(
        addresses, socket_timeout=CLIENT_TIMEOUT, socket_connect_timeout=CLIENT_TIMEOUT
    )
    return sentinel.master_for(
        SERVICE, socket_timeout=CLIENT_TIMEOUT, socket_connect_timeout=CLIENT_TIMEOUT
    )


async def close(config: CacheConfig) -> None:
    """Close the config's client and its Sentinel's clients (master_for leaves them open)."""
    client = config.redis_client
    await client.aclose()
    await client.connection_pool.sentinel_manager.aclose()


def cache_config(addresses: list[tuple[str, int]], prefix: str, **options: Any) -> CacheConfig:
    """A config on a client of its own. ``identity_check_seconds`` builds the RedisBackend by
    hand, to stand for a failover faster than that check (a coordinated one takes well
    under a second)."""
    client = sentinel_client(addresses)
    every = options.pop("identity_check_seconds", None)
    if every is not None:
        backend = RedisBackend(client, identity_check_seconds=every)
        return CacheConfig(backend=backend, key_prefix=prefix, **options)
    return CacheConfig(redis_client=client, key_prefix=prefix, **options)


# -- the bystander: primes its cache, then reads after the failover ----------------------------


def bystander(
    db_url: str,
    addresses: list[tuple[str, int]],
    prefix: str,
    row: int,
    options: dict[str, Any],
    orders: Queue[str],
    replies: Queue[Any],
) -> None:
    asyncio.run(_bystander(db_url, addresses, prefix, row, options, orders, replies))


async def _bystander(
    db_url: str,
    addresses: list[tuple[str, int]],
    prefix: str,
    row: int,
    options: dict[str, Any],
    orders: Queue[str],
    replies: Queue[Any],
) -> None:
    engine = create_engine(db_url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    config = cache_config(addresses, prefix, **options)
    try:
        while (order := await asyncio.to_thread(orders.get)) != "stop":
            values = []
            for _ in range(int(order)):
                async with factory() as session:
                    found = await BaseRepository(User, session, config).get(row)
                    values.append(None if found is None else found.salary)
                await config.settle()
            replies.put((values, config.stats().hits))
    finally:
        await close(config)
        await engine.dispose()


# -- the load: reads and writes of shared rows, every call timed ---------------------------


def load(
    db_url: str,
    addresses: list[tuple[str, int]],
    prefix: str,
    owned: list[int],
    rows: list[int],
    options: dict[str, Any],
    ready: Event,
    stop: Event,
    out: str,
    seed: int,
) -> None:
    asyncio.run(_load(db_url, addresses, prefix, owned, rows, options, ready, stop, out, seed))


async def _load(
    db_url: str,
    addresses: list[tuple[str, int]],
    prefix: str,
    owned: list[int],
    rows: list[int],
    options: dict[str, Any],
    ready: Event,
    stop: Event,
    out: str,
    seed: int,
) -> None:
    """Until ``stop``: update one of ``owned`` (this process is the only writer of those rows,
    so their salaries only go up), or read one of ``rows`` by get or all of them by list.
    Records ``[kind, row, salary, started, returned]`` per row touched, and every exception a
    repository call raised."""
    chance = random.Random(seed)
    engine = create_engine(db_url, pool_size=4)
    factory: async_sessionmaker[AsyncSession] = async_sessionmaker(engine, expire_on_commit=False)
    config = cache_config(addresses, prefix, **options)
    counter = dict.fromkeys(owned, 0)
    records: list[list[Any]] = []
    errors: list[str] = []
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with factory() as session:
                    repo = BaseRepository(User, session, config)
                    dice = chance.random()
                    if dice < (WRITER_SHARE if seed == 0 else WRITE_SHARE):
                        row = chance.choice(owned)
                        counter[row] += 1
                        failures = config.stats().invalidation_failures
                        await repo.update(row, {"salary": counter[row]})
                        failed = config.stats().invalidation_failures > failures
                        touched = [("W" if failed else "w", row, counter[row])]
                    elif dice < 0.5:
                        users = await repo.list(order_by=["id"])
                        touched = [("r", user.id, user.salary) for user in users]
                    else:
                        row = chance.choice(rows)
                        user = await repo.get(row)
                        touched = [("r", row, None if user is None else user.salary)]
            except Exception as error:  # counted: the bar is none
                errors.append(f"{type(error).__name__}: {error}")
                continue
            returned = time.monotonic()
            records += [[kind, row, value, started, returned] for kind, row, value in touched]
            ready.set()
            # Requests do not arrive evenly: now and then a process is idle for a while, so
            # processes meet the failover (and open and close their breakers) at different
            # times.
            await asyncio.sleep(chance.uniform(0, 1.0) if chance.random() < 0.03 else 0)
        await config.settle()
    finally:
        await close(config)
        await engine.dispose()
        report = {"records": records, "errors": errors, "stats": _stats(config)}
        await asyncio.to_thread(Path(out).write_text, json.dumps(report))


def _stats(config: CacheConfig) -> dict[str, Any]:
    stats = config.stats()
    return {
        "hits": stats.hits,
        "misses": stats.misses,
        "backend_errors": stats.backend_errors,
        "invalidation_failures": stats.invalidation_failures,
    }
