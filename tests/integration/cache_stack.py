"""What the cache integration tests share: a cache backend per test (in-process or the shared
Redis), a fake clock, and helpers to look at what a config stored.

Each test gets a key prefix of its own (``brt-<hex>``), so runs sharing the Redis at
127.0.0.1:6379 never see each other's keys; the test's keys are unlinked afterwards and
nothing is ever flushed. A Redis that cannot be reached fails the test, never skips it.

Usage, in a test module::

    @pytest.fixture(params=STACKS)
    async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
        async with open_stack(request.param) as opened:
            yield opened
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import inspect as sa_inspect

from baserepo import CacheConfig, CacheWarmingConfig

REDIS_URL = os.environ.get("BASEREPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STACKS = ["memory", "redis"]


@dataclass
class CacheStack:
    """One cache backend kind for one test: builds configs that share its key prefix."""

    kind: str
    prefix: str = field(default_factory=lambda: f"brt-{uuid.uuid4().hex[:12]}")
    _clients: list[Redis] = field(default_factory=list)

    @property
    def is_redis(self) -> bool:
        return self.kind == "redis"

    def redis_client(self) -> Redis | None:
        """A new client (one per simulated process) of the shared Redis; None for memory."""
        if not self.is_redis:
            return None
        client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
        self._clients.append(client)
        return client

    def config(
        self, warming_config: CacheWarmingConfig | None = None, **options: Any
    ) -> CacheConfig:
        """A config on this stack's backend and prefix. On Redis every call is another
        "process": its own client, the same keys."""
        options.setdefault("key_prefix", self.prefix)
        return CacheConfig(
            redis_client=self.redis_client(), warming_config=warming_config, **options
        )

    async def keys(self, config: CacheConfig) -> set[str]:
        """Every key this config's backend holds under the stack's prefix."""
        if self.is_redis:
            client = self._clients[0]
            return {
                key.decode() async for key in client.scan_iter(match=f"{self.prefix}:*", count=500)
            }
        data: dict[str, Any] = config.backend._data  # type: ignore[attr-defined]
        return {key for key in data if key.startswith(f"{self.prefix}:")}

    async def cleanup(self) -> None:
        if self._clients:
            client = self._clients[0]
            doomed = [key async for key in client.scan_iter(match=f"{self.prefix}:*", count=500)]
            if doomed:
                await client.unlink(*doomed)
        for client in self._clients:
            await client.aclose()


@asynccontextmanager
async def open_stack(kind: str) -> AsyncIterator[CacheStack]:
    stack = CacheStack(kind)
    if stack.is_redis:
        probe = stack.redis_client()
        assert probe is not None
        try:
            await probe.ping()
        except Exception as exc:
            await stack.cleanup()
            pytest.fail(
                f"Redis unreachable at {REDIS_URL}: {type(exc).__name__}: {exc}", pytrace=False
            )
    try:
        yield stack
    finally:
        await stack.cleanup()


def column_values(instance: Any) -> dict[str, Any]:
    """Every mapped column attribute of a loaded instance (read without lazy loading)."""
    mapper = sa_inspect(type(instance))
    loaded = instance.__dict__
    missing = [attr.key for attr in mapper.column_attrs if attr.key not in loaded]
    assert not missing, f"{type(instance).__name__} attributes not loaded: {missing}"
    return {attr.key: loaded[attr.key] for attr in mapper.column_attrs}


def assert_same_value(where: str, cached: Any, uncached: Any) -> None:
    """Equal, of the same type, and with the same repr (so a Decimal keeps its exponent and
    a datetime its tzinfo, which == alone would not check)."""
    # asyncpg returns its own uuid.UUID subclass; the cache gives the standard class.
    driver_uuid = type(cached) is uuid.UUID and isinstance(uncached, uuid.UUID)
    assert type(cached) is type(uncached) or driver_uuid, (
        f"{where}: cached {type(cached).__name__} {cached!r}, "
        f"uncached {type(uncached).__name__} {uncached!r}"
    )
    assert repr(cached) == repr(uncached), f"{where}: cached {cached!r} != uncached {uncached!r}"
    if cached == cached:
        assert cached == uncached, f"{where}: cached {cached!r} != uncached {uncached!r}"


def assert_same_rows(cached: list[Any], uncached: list[Any]) -> None:
    """Same length, same model class, and every column equal and of the same Python type."""
    assert type(cached) is list
    assert len(cached) == len(uncached)
    for index, (hit, fresh) in enumerate(zip(cached, uncached, strict=True)):
        assert type(hit) is type(fresh), f"row {index}: {type(hit)} is not {type(fresh)}"
        fresh_values = column_values(fresh)
        for attr, value in column_values(hit).items():
            assert_same_value(f"row {index} .{attr}", value, fresh_values[attr])
