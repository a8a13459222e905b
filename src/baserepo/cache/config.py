"""Cache settings as the user guide (docs/guide.md) spells them, and the guide's methods.

Invariant: a ``CacheConfig`` holds what the user set (plus the backend those settings chose)
and nothing that changes while the application runs. The running state (statistics, usage,
trust, the circuit breaker, the per-model caches) is its ``runtime``; the user guide's methods
(``should_warm_cache``, ``get_popular_queries``, ``_query_usage``) and ``stats``/``settle``
apply the settings to that state. Nothing in the state modules imports this one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._dependencies import needs
from ._memory import MemoryBackend
from ._runtime import CacheRuntime
from ._stats import CacheStats, WarmReport
from ._usage import QueryUsage

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._protocol import CacheBackend

__all__ = [
    "CacheConfig",
    "CacheStats",
    "CacheWarmingConfig",
    "ModelCacheConfig",
    "QueryUsage",
    "WarmReport",
]


@dataclass
class CacheWarmingConfig:
    """Which queries count as popular and how often they are warmed."""

    enabled: bool = False
    """Warm at all (``warm_cache()`` still works by hand when False)."""
    popular_queries_limit: int = 10
    """How many of the most used queries are warmed."""
    min_usage_count: int = 5
    """A query needs at least this many (decayed) uses to count as popular."""
    warm_interval_seconds: float = 3600
    """How often ``should_warm_cache()`` says yes and the background warmer runs."""
    track_usage: bool = True
    """Count uses of list/count/get queries (and remember them so they can be replayed)."""
    max_tracked_queries: int = 1000
    """Bound on tracked queries per model; the least used are dropped."""
    decay_factor: float = 0.5
    """Scores are multiplied by this at every warm, so yesterday's hot queries fade."""


class CacheConfig:
    """The query cache of one application: pass the same config to every repository.

    Args:
        redis_client: a ``redis.asyncio.Redis`` or ``RedisCluster``; None selects the
            in-process backend (one process, no server).
        default_ttl: seconds an entry lives at most.
        warming_config: popular-query tracking and warming.
        backend: any :class:`~baserepo.cache.CacheBackend`, instead of ``redis_client``.
        key_prefix: first segment of every key (``baserepo:v1:{users}:list:...``).
        operation_timeout: seconds one backend call may take before it counts as a miss.
        breaker_threshold / breaker_reset_seconds: consecutive failures that open the circuit
            breaker, and how long it stays open before one trial call.
        lease_seconds / lease_after_seconds / lease_wait_seconds: cross-process stampede
            control. A miss whose query runs longer than ``lease_after_seconds`` takes a
            lease (valid ``lease_seconds``); other processes that miss the same entry while
            it is held wait up to ``lease_wait_seconds`` for it, then read through.
        usage_flush_every: usage increments sent to the backend in one round trip.
        bump_retry_seconds: how long a write whose invalidation could not reach the backend
            retries it (every 50 ms, past an open breaker) before it returns; only then is
            the model marked untrusted. 0 (the default): no retry. With Sentinel, set it
            above the failover time (docs/deployment.md); during a longer outage every
            write waits this long.
        wait_replicas / wait_timeout: with ``redis_client``, send ``WAIT wait_replicas
            <wait_timeout>`` after each bump; a bump fewer replicas acknowledged counts as
            failed (retried, then the model is untrusted here). 0 (the default): no WAIT.
        write_intent_seconds: how long a write's intent, recorded before its COMMIT, keeps
            the model's entries from being filled; a writer that dies after its COMMIT (before
            its bump) costs at most this long of reads past the cache, never a stale read.
            Keep it above the longest COMMIT (docs/deployment.md).
        clock: monotonic seconds (injected in tests); ``wall_clock``: shared wall time, used
            to number warm intervals across processes.
    """

    def __init__(
        self,
        redis_client: Any = None,
        default_ttl: float = 600,
        warming_config: CacheWarmingConfig | None = None,
        *,
        backend: CacheBackend | None = None,
        key_prefix: str = "baserepo",
        enabled: bool = True,
        operation_timeout: float = 0.25,
        breaker_threshold: int = 3,
        breaker_reset_seconds: float = 5.0,
        lease_seconds: float = 5.0,
        lease_after_seconds: float = 0.005,
        lease_wait_seconds: float = 0.05,
        usage_flush_every: int = 50,
        bump_retry_seconds: float = 0.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        write_intent_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if wait_replicas > 0 and wait_timeout >= operation_timeout:
            raise ValueError("wait_timeout must be below operation_timeout (a WAIT within it)")
        if wait_replicas < 0 or bump_retry_seconds < 0:
            raise ValueError("wait_replicas and bump_retry_seconds must not be negative")
        if write_intent_seconds <= 0:
            # An intent that expires at once would let a writer that dies after its COMMIT
            # leave stale entries: the guarantee would be gone without a word.
            raise ValueError("write_intent_seconds must be above 0 (keep it above your COMMIT)")
        if backend is None:
            if redis_client is not None:
                with needs("a Redis cache (redis_client=)"):
                    from ._redis import RedisBackend  # only this path needs redis-py

                backend = RedisBackend(
                    redis_client,
                    wait_replicas=wait_replicas,
                    wait_timeout=wait_timeout,
                    clock=clock,
                )
            else:
                backend = MemoryBackend(clock=clock)
        self.backend: CacheBackend = backend
        self.redis_client = redis_client
        self.default_ttl = default_ttl
        self.warming_config = warming_config or CacheWarmingConfig()
        self.key_prefix = key_prefix
        self.enabled = enabled
        self.operation_timeout = operation_timeout
        self.lease_seconds = lease_seconds
        self.lease_after_seconds = lease_after_seconds
        self.lease_wait_seconds = lease_wait_seconds
        self.usage_flush_every = usage_flush_every
        self.bump_retry_seconds = bump_retry_seconds
        self.write_intent_seconds = write_intent_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self.runtime = CacheRuntime(
            clock=clock,
            operation_timeout=operation_timeout,
            breaker_threshold=breaker_threshold,
            breaker_reset_seconds=breaker_reset_seconds,
            usage_flush_every=usage_flush_every,
            backend_name=lambda: type(self.backend).__name__,
        )
        """The running cache of this config (state, not settings)."""

    # -- the user guide's API (docs/guide.md) -------------------------------------------

    @property
    def _query_usage(self) -> dict[str, QueryUsage]:
        """Every tracked query by ``"<table>:<digest>"`` (what the user guide inspects)."""
        return self.runtime.usage.tracked

    def should_warm_cache(self, model: str | None = None) -> bool:
        """True when warming is enabled and ``warm_interval_seconds`` passed since the last
        warm of ``model`` (a table name), or, without one, of any model this config serves.

        ``repo._cache_config`` is this config bound to the repository's model, so the
        user guide's ``if repo._cache_config.should_warm_cache(): await repo.warm_cache()`` asks
        about that repository's own model.
        """
        if not self.warming_config.enabled:
            return False
        tables = [model] if model is not None else self.runtime.tables()
        return self.runtime.due_for_warm(tables or [""], self.warming_config.warm_interval_seconds)

    def bound_to(self, table: str) -> ModelCacheConfig:
        """This config as seen from one model's repository (``repo._cache_config``)."""
        return ModelCacheConfig(self, table)

    def get_popular_queries(self, model: str | None = None) -> list[QueryUsage]:
        """The most used queries (at least ``min_usage_count`` uses), most used first.

        With Redis the counts are fleet-wide as of this process's last usage sync (every
        ``usage_flush_every`` uses and at every warm); ``model`` narrows to one table.
        """
        warming = self.warming_config
        return self.runtime.usage.popular(
            model, warming.min_usage_count, warming.popular_queries_limit
        )

    def stats(self, model: str | None = None) -> CacheStats:
        """Counters for one table, or summed over every model this config serves."""
        return self.runtime.snapshot(model)

    async def settle(self) -> None:
        """Wait until every cache fill started so far has reached the backend.

        Fills run in the background so a miss costs its caller no extra round trip; call
        this before shutting down, or in a test that inspects the backend.
        """
        await self.runtime.settle()


class ModelCacheConfig:
    """A :class:`CacheConfig` bound to one model: what ``repo._cache_config`` returns.

    The user guide calls ``should_warm_cache()``, ``get_popular_queries()`` and ``_query_usage`` on
    it; bound to the repository's model they answer for that model. Everything else is the
    shared config's.
    """

    def __init__(self, config: CacheConfig, table: str) -> None:
        self.config = config
        self.table = table

    def should_warm_cache(self) -> bool:
        return self.config.should_warm_cache(self.table)

    def get_popular_queries(self) -> list[QueryUsage]:
        return self.config.get_popular_queries(self.table)

    def stats(self) -> CacheStats:
        return self.config.stats(self.table)

    @property
    def _query_usage(self) -> dict[str, QueryUsage]:
        return self.config.runtime.usage.of_model(self.table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.config, name)
