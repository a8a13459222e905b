"""Fixtures for the cache backend contract: one ``backend`` fixture, parametrised over every
backend (ids ``memory``, ``redis``, ``cluster``), so each contract test runs against all of them.

- ``memory``: ``MemoryBackend`` driven by a ``FakeClock``.
- ``redis``: ``RedisBackend`` on the shared Redis at 127.0.0.1:6379 (``BASEREPO_TEST_REDIS_URL``
  overrides). Other runs use that server too: each test works under a key prefix of its own and
  deletes its keys afterwards; nothing is flushed.
- ``cluster``: ``RedisBackend`` on a three-master Redis Cluster this session starts itself on
  spare loopback ports (``redis_cluster``), stopped at the end.

``target`` gives a test what it needs beyond the backend: its key prefix, the clock, the raw
client (None for memory) and ``elapse()``, which advances the fake clock or, on Redis, sleeps.

The Redis fixtures (``redis_client``, ``redis_cluster``, ``spare_redis``) and the server helpers
live in ``tests/redis_servers.py``, shared with the integration tests through
``tests/conftest.py``; the names test modules import from here are re-exported.

Nothing is skipped: a Redis that cannot be reached or a cluster that will not form fails the
tests that need it, saying why.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis, RedisCluster

from baserepo.cache._memory import MemoryBackend
from baserepo.cache._protocol import CacheBackend
from baserepo.cache._redis import RedisBackend
from tests.clocks import FakeClock
from tests.redis_servers import REDIS_URL, RedisServer, start_cluster, wait_for_cluster

# Re-exported: the contract tests import these from here.
__all__ = ["REDIS_URL", "RedisServer", "start_cluster", "wait_for_cluster"]

BACKENDS = ["memory", "redis", "cluster"]


# -- the backend under contract -------------------------------------------------------------


@dataclass
class Target:
    """One backend under test and what a test needs around it."""

    kind: str
    backend: CacheBackend
    prefix: str
    clock: FakeClock
    client: Redis | RedisCluster | None

    def key(self, model: str, rest: str) -> str:
        """A key laid out like baserepo's own: ``<prefix>:{<model>}:<rest>``. The hash tag
        puts every key of one model in one cluster slot."""
        return f"{self.prefix}:{{{model}}}:{rest}"

    def models_on_distinct_nodes(self, count: int) -> list[str]:
        """``count`` model names whose keys live on different cluster nodes (any names off a
        cluster)."""
        if not isinstance(self.client, RedisCluster):
            return [f"m{i}" for i in range(count)]
        chosen: dict[str, str] = {}
        for i in range(1000):
            node = self.client.get_node_from_key(self.key(f"m{i}", "x"))
            assert node is not None
            chosen.setdefault(node.name, f"m{i}")
            if len(chosen) == count:
                return list(chosen.values())
        raise AssertionError(f"found models on only {len(chosen)} nodes")

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass for TTLs: the fake clock moves; a real server is waited on."""
        if self.client is None:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    async def pttl(self, key: str) -> int:
        assert self.client is not None
        return await self.client.pttl(key)

    async def raw_keys(self) -> set[str]:
        """Every key under this test's prefix, straight from the server (all cluster nodes)."""
        assert self.client is not None
        return {
            key.decode() async for key in self.client.scan_iter(match=f"{self.prefix}:*", count=500)
        }

    async def cleanup(self) -> None:
        if self.client is None:
            return
        keys = await self.raw_keys()
        if keys:
            await self.client.unlink(*keys)


_TARGET = pytest.StashKey[Target]()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> CacheBackend:
    """Each cache backend in turn; see ``target`` for the rest of the test's setup.

    A plain (sync) fixture so it can pick its server lazily with ``getfixturevalue`` (which
    pytest-asyncio does not allow inside an async fixture): ``-k memory`` starts no servers.
    ``_close_backend`` tears it down.
    """
    clock = FakeClock()
    prefix = f"brtest-{uuid.uuid4().hex[:12]}"
    instance: CacheBackend
    client: Redis | RedisCluster | None = None
    if request.param == "memory":
        instance = MemoryBackend(clock=clock)
    else:
        fixture = "redis_client" if request.param == "redis" else "redis_cluster"
        client = request.getfixturevalue(fixture)
        instance = RedisBackend(client)
    request.node.stash[_TARGET] = Target(request.param, instance, prefix, clock, client)
    return instance


@pytest.fixture(autouse=True)
async def _close_backend(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    # Autouse, so set up before `backend` and torn down after it, while the session's
    # clients are still open.
    yield
    target = request.node.stash.get(_TARGET, None)
    if target is not None:
        await target.backend.close()
        await target.cleanup()


@pytest.fixture
def target(backend: CacheBackend, request: pytest.FixtureRequest) -> Target:
    target: Target = request.node.stash[_TARGET]
    return target
