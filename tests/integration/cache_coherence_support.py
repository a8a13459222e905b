"""What the cache coherence tests share: a cache "stack" per test (the in-process backend, the
shared Redis, or the session's Redis Cluster), readers that each use a fresh session, an oracle
that runs the same query without a cache, and a gate that pauses a reader between its database
read and its cache fill.

Everything runs against real services. ``FillGate`` wraps the real backend the config built and
only delays fills; ``Clock`` is real monotonic time that a test can move ahead (to let a circuit
breaker reset without sleeping).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig
from baserepo.cache import MemoryBackend
from tests.models import User

STACKS = ["memory", "redis"]
ALL_STACKS = ["memory", "redis", "cluster"]
GATE_TIMEOUT_SECONDS = 5.0

Factory = async_sessionmaker[AsyncSession]
Query = tuple[str, tuple[Any, ...], dict[str, Any]]


class Clock:
    """Monotonic seconds that can also jump ahead: ``advance()`` lets a breaker's reset time
    pass at once, while real time keeps flowing for timeouts and lease waits."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def no_retry_client(port: int, *, timeout: float = 0.05) -> Redis:
    """A standalone client for a server the test will stop: no retries, short timeouts."""
    return Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class Stack:
    """One cache backend kind for one test, under a key prefix of its own.

    ``config()`` builds another ``CacheConfig`` on the same keys each time: on Redis with a
    client of its own (another process, as far as the cache can tell), in process on the same
    ``MemoryBackend``.
    """

    kind: str
    server: Redis | RedisCluster | None
    prefix: str = field(default_factory=lambda: f"brcoh-{uuid.uuid4().hex[:12]}")
    clients: list[Redis | RedisCluster] = field(default_factory=list)
    memory: MemoryBackend = field(default_factory=MemoryBackend)
    configs: list[CacheConfig] = field(default_factory=list)

    @property
    def is_redis(self) -> bool:
        return self.server is not None

    def client(self) -> Redis | RedisCluster:
        assert self.server is not None, "the in-process stack has no client"
        client: Redis | RedisCluster
        if isinstance(self.server, RedisCluster):
            node = self.server.get_default_node()
            assert node is not None
            client = RedisCluster(host=node.host, port=node.port)
        else:
            kwargs = self.server.get_connection_kwargs()
            client = Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0))
        self.clients.append(client)
        return client

    def config(self, **options: Any) -> CacheConfig:
        options.setdefault("key_prefix", self.prefix)
        if self.is_redis:
            config = CacheConfig(redis_client=self.client(), **options)
        else:
            config = CacheConfig(backend=self.memory, **options)
        self.configs.append(config)
        return config

    async def raw_keys(self, pattern: str = "*") -> set[str]:
        """Keys under this stack's prefix, straight from the server (every cluster node)."""
        assert self.server is not None
        match = f"{self.prefix}:{pattern}"
        return {key.decode() async for key in self.server.scan_iter(match=match, count=500)}

    async def raw_values(self) -> list[bytes]:
        """Every string value stored under this stack's prefix."""
        assert self.server is not None
        values = []
        for key in await self.raw_keys():
            if await self.server.type(key) in (b"string", "string"):
                value = await self.server.get(key)
                if value is not None:
                    values.append(value)
        return values

    async def close(self) -> None:
        # Fills still under way (a test's last read was a miss) would otherwise take a new
        # connection from a client closed under them, and leak it.
        for config in self.configs:
            await config.settle()
        if self.server is not None:
            # Also the keys of configs given a prefix derived from this one ("<prefix>-...").
            match = f"{self.prefix}*"
            doomed = sorted([key async for key in self.server.scan_iter(match=match, count=500)])
            for start in range(0, len(doomed), 200):
                await self.server.unlink(*doomed[start : start + 200])
        for client in self.clients:
            await client.aclose()


class Gate:
    """The real backend a config built, whose ``methods`` wait while the gate is armed.

    Gating ``fill``/``fill_and_release`` pauses a reader exactly where the stale-set race
    happens: after its database read (its rows are already returned) and before its cache
    fill. Everything else goes straight through to the real backend.
    """

    def __init__(self, inner: Any, methods: Sequence[str]) -> None:
        self._inner = inner
        self._methods = frozenset(methods)
        self._armed = False
        self.reached = asyncio.Event()
        self._opened = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._methods:
            return method

        async def gated(*args: Any, **kwargs: Any) -> Any:
            if self._armed:
                self.reached.set()
                await asyncio.wait_for(self._opened.wait(), GATE_TIMEOUT_SECONDS)
            return await method(*args, **kwargs)

        return gated

    def arm(self) -> None:
        self._armed = True
        self.reached.clear()
        self._opened.clear()

    def open(self) -> None:
        self._armed = False
        self._opened.set()

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), GATE_TIMEOUT_SECONDS)


FILLS = ("fill", "fill_and_release")


def install_gate(config: CacheConfig, *methods: str) -> Gate:
    """Put a gate on ``methods`` of the config's backend (its fills by default)."""
    gate = Gate(config.backend, methods or FILLS)
    config.backend = gate
    return gate


# -- reading and comparing -------------------------------------------------------------------


def column_values(instance: Any) -> tuple[Any, ...]:
    """Every mapped column of an instance, read from its dict (no lazy loading)."""
    loaded = instance.__dict__
    return tuple(loaded[attr.key] for attr in sa_inspect(type(instance)).column_attrs)


def plain(result: Any) -> Any:
    """A read's result as plain values: None, a count, a row tuple or a list of row tuples."""
    if result is None or isinstance(result, int):
        return result
    if isinstance(result, list):
        return [column_values(row) for row in result]
    return column_values(result)


async def run(
    factory: Factory,
    config: CacheConfig | None,
    query: Query,
    model: type[Any] = User,
) -> Any:
    """One repository call in a session of its own (a request, in an application)."""
    operation, args, kwargs = query
    async with factory() as session:
        repo: BaseRepository[Any, Any, Any] = BaseRepository(model, session, config)
        return await getattr(repo, operation)(*args, **kwargs)


async def truth(factory: Factory, query: Query, model: type[Any] = User) -> Any:
    """What the database says now, with no cache involved."""
    return plain(await run(factory, None, query, model))


async def assert_coherent(
    factory: Factory, config: CacheConfig, queries: Sequence[Query], model: type[Any] = User
) -> None:
    """Every query, read through the cache, gives what the database gives."""
    for query in queries:
        cached = plain(await run(factory, config, query, model))
        expected = await truth(factory, query, model)
        assert cached == expected, f"stale read of {query}: cached {cached}, database {expected}"


_READS_A_TABLE = re.compile(r"\s*(SELECT|WITH)\b.*\bFROM\b", re.IGNORECASE | re.DOTALL)


@dataclass
class StatementLog:
    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Queries that read a table (not ``SELECT @@...``, ``SHOW ...`` or ``BEGIN``)."""
        return sum(1 for s in self.statements if _READS_A_TABLE.match(s))


@contextmanager
def selects_on(engine: AsyncEngine) -> Iterator[StatementLog]:
    """SELECT statements sent on ``engine`` inside the block."""
    log = StatementLog()

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        log.statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def prime(
    factory: Factory,
    config: CacheConfig,
    engine: AsyncEngine,
    queries: Sequence[Query],
    model: type[Any] = User,
) -> list[Any]:
    """Read every query once, let the fills land, and prove each is now served from the cache
    (no statement reaches the database). Returns the cached results."""
    for query in queries:
        await run(factory, config, query, model)
    await config.settle()
    results = []
    with selects_on(engine) as log:
        for query in queries:
            results.append(plain(await run(factory, config, query, model)))
    assert log.count == 0, f"primed queries were not all cached: {log.statements}"
    return results


# -- data --------------------------------------------------------------------------------------


def person(i: int, **extra: Any) -> dict[str, Any]:
    values = {
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "department": "eng" if i % 3 else "ops",
        "salary": 1000 + i,
    }
    return {**values, **extra}


async def seed(factory: Factory, count: int = 12) -> list[int]:
    """``count`` users, written without a cache (so no generation exists yet)."""
    async with factory() as session:
        result = await BaseRepository(User, session).bulk_create([person(i) for i in range(count)])
    assert result.error_count == 0, result.errors
    return sorted(result.created_ids)


def user_queries(ids: Sequence[int]) -> list[Query]:
    """A list, a count, a get and a get_many, filtered and not, that writes can change."""
    return [
        ("list", (), {"department": "eng"}),
        ("list", (), {"order_by": "-salary", "limit": 5}),
        ("count", (), {"department": "eng"}),
        ("count", (), {}),
        ("get", (ids[1],), {}),
        ("get", (ids[1],), {"include_deleted": True}),
        ("get_many", (list(ids[:4]),), {}),
    ]
