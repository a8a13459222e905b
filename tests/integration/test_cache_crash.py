"""A writer killed between its commit and its cache bump leaves nothing stale servable.

Each test caches a query in this process, then runs a writer in a child OS process
(``crash_writer``) that is SIGKILLed right after its COMMIT, before the library bumps the
model's generation. From then on this process must never be served the rows from before the
write, and must be served from the cache again (with the new rows) within the write intent's
bound (``write_intent_seconds``) plus the time of a read or two.

Needs a database another process can reach (every backend here: PostgreSQL, MariaDB and the
SQLite file) and a Redis shared between the processes: the standalone one (under a key prefix
of this test's own) and the session's Redis Cluster. The in-process backend dies with its
process, so it has nothing to prove here; its intent semantics are in the contract tests.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from baserepo import CacheConfig
from tests.integration.cache_coherence_support import plain, prime, run, seed, selects_on, truth
from tests.integration.crash_writer import SURVIVED

ROOT = Path(__file__).resolve().parents[2]
WRITE_INTENT_SECONDS = 1.0
SLACK_SECONDS = 1.5
"""A read or two beyond the bound: the first fill after the intent expired completes the dead
writer's invalidation and is refused; the next miss fills."""
CHILD_TIMEOUT_SECONDS = 60
SLOW_MACHINE = 5.0
"""Each backend call's budget (``operation_timeout``): these tests are about a crash, not about
a Redis call that a loaded machine delayed past the default 0.25 s."""
QUERY = ("list", (), {"department": "eng", "order_by": "id"})


@pytest.fixture(params=["redis", "cluster"])
def server(request: pytest.FixtureRequest) -> Redis | RedisCluster:
    fixture = "redis_client" if request.param == "redis" else "redis_cluster"
    client: Redis | RedisCluster = request.getfixturevalue(fixture)
    return client


@pytest.fixture
async def prefix(server: Redis | RedisCluster) -> AsyncIterator[str]:
    prefix = f"brt-crash-{uuid.uuid4().hex[:12]}"
    yield prefix
    doomed = [key async for key in server.scan_iter(match=f"{prefix}:*", count=500)]
    for key in doomed:  # one by one: cluster keys of several slots
        await server.unlink(key)


def _address(server: Redis | RedisCluster) -> tuple[str, int]:
    if isinstance(server, RedisCluster):
        node = server.get_default_node()
        assert node is not None
        return node.host, node.port
    kwargs = server.get_connection_kwargs()
    return kwargs["host"], kwargs["port"]


def _config(server: Redis | RedisCluster, prefix: str) -> CacheConfig:
    host, port = _address(server)
    client = RedisCluster(host=host, port=port) if isinstance(server, RedisCluster) else None
    return CacheConfig(
        redis_client=client or Redis(host=host, port=port),
        key_prefix=prefix,
        write_intent_seconds=WRITE_INTENT_SECONDS,
        operation_timeout=SLOW_MACHINE,
    )


async def _kill_a_writer_after_its_commit(
    db_url: str, server: Redis | RedisCluster, prefix: str, write: str, target: int
) -> None:
    spec = {
        "db_url": db_url,
        "redis": _address(server),
        "cluster": isinstance(server, RedisCluster),
        "prefix": prefix,
        "write": write,
        "id": target,
        "write_intent_seconds": WRITE_INTENT_SECONDS,
        "operation_timeout": SLOW_MACHINE,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.crash_writer",
        json.dumps(spec),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, errors = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT_SECONDS)
    assert child.returncode != SURVIVED, "the writer's commit never reached the kill point"
    assert child.returncode == -signal.SIGKILL, errors.decode()


@pytest.mark.parametrize("write", ["bulk_update", "update", "orm"])
async def test_a_writer_killed_after_its_commit_leaves_nothing_stale(
    write: str,
    server: Redis | RedisCluster,
    prefix: str,
    db_url: str,
    engine: AsyncEngine,
    session_factory: async_sessionmaker[Any],
) -> None:
    ids = await seed(session_factory)
    config = _config(server, prefix)
    try:
        (before,) = await prime(session_factory, config, engine, [QUERY])

        await _kill_a_writer_after_its_commit(db_url, server, prefix, write, ids[1])
        killed_at = time.monotonic()
        after = await truth(session_factory, QUERY)
        assert after != before, "the child's write did not commit"

        # Never the old rows; from the cache again (no SELECT) within the bound.
        served_from_cache_after: float | None = None
        while time.monotonic() - killed_at < WRITE_INTENT_SECONDS + SLACK_SECONDS + 2:
            with selects_on(engine) as log:
                rows = plain(await run(session_factory, config, QUERY))
            assert rows == after, f"stale read {time.monotonic() - killed_at:.2f}s after"
            if log.count == 0:
                served_from_cache_after = time.monotonic() - killed_at
                break
            await config.settle()
            await asyncio.sleep(0.05)
        assert served_from_cache_after is not None, "never served from the cache again"
        assert served_from_cache_after <= WRITE_INTENT_SECONDS + SLACK_SECONDS
    finally:
        await config.settle()
        client = config.redis_client
        await client.aclose()
