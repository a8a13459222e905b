"""Cache configuration as the guide spells it, plus the shared state one config carries:
the backend, the circuit breaker, usage counts for warming, and statistics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._breaker import BreakerState, CircuitBreaker, RateLimitedLog
from ._memory import MemoryBackend

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._model import ModelInfo
    from ._protocol import CacheBackend
    from ._query_cache import QueryCache

__all__ = [
    "CacheConfig",
    "CacheStats",
    "CacheWarmingConfig",
    "ModelCacheConfig",
    "QueryUsage",
    "WarmReport",
]

logger = logging.getLogger("baserepo.cache")

_FAILED = object()


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


@dataclass
class QueryUsage:
    """One tracked query: how often it ran and what to replay to warm it."""

    model: str
    """The model's table name."""
    operation: str
    """``list``, ``count``, ``get`` or ``get_many``."""
    digest: str
    spec: dict[str, Any] | None
    """Keyword arguments to replay the query; None when they could not be stored."""
    count: float = 0
    last_used: float = 0.0

    @property
    def usage_count(self) -> float:
        return self.count


@dataclass(frozen=True)
class WarmReport:
    """What one ``warm_cache()`` call did."""

    model: str
    warmed: int
    """Queries run and stored."""
    already_cached: int
    """Popular queries that were still cached and current."""
    failed: int
    """Queries that could not be replayed or stored."""
    started_at: float
    duration_seconds: float
    queries: tuple[QueryUsage, ...] = ()


@dataclass
class _Counters:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    stale_fills_rejected: int = 0
    invalidations: int = 0
    invalidation_failures: int = 0
    bypasses: int = 0
    backend_errors: int = 0


@dataclass(frozen=True)
class CacheStats:
    """A snapshot of cache activity (for one model, or for the whole config)."""

    hits: int
    misses: int
    fills: int
    stale_fills_rejected: int
    """Fills refused because a write moved the generation on while the query ran."""
    invalidations: int
    invalidation_failures: int
    """Invalidations that could not reach the backend (the model was then bypassed)."""
    bypasses: int
    """Reads that skipped the cache (inside a writing transaction, untrusted model...)."""
    backend_errors: int
    breaker_state: BreakerState
    last_warm: WarmReport | None = None
    untrusted_models: tuple[str, ...] = ()

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


@dataclass
class _Usage:
    """Local usage counts and the pending increments not yet sent to the backend."""

    tracked: dict[str, QueryUsage] = field(default_factory=dict)
    pending: dict[str, dict[str, float]] = field(default_factory=dict)
    pending_specs: dict[str, dict[str, bytes]] = field(default_factory=dict)
    pending_total: int = 0


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
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if backend is None:
            if redis_client is not None:
                from ._redis import RedisBackend  # only this path needs redis-py

                backend = RedisBackend(redis_client)
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
        self.clock = clock
        self.wall_clock = wall_clock
        self.breaker = CircuitBreaker(breaker_threshold, breaker_reset_seconds, clock)
        self._problems = RateLimitedLog(logger, 30.0, clock)
        self._caches: dict[type[Any], QueryCache] = {}
        self._counters: dict[str, _Counters] = {}
        self._untrusted: set[str] = set()
        self._usage = _Usage()
        self._fleet_scores: dict[str, float] = {}
        self._last_warm_at: dict[str, float] = {}
        self._last_warm: dict[str, WarmReport] = {}

    # -- the guide's API ----------------------------------------------------------------

    @property
    def _query_usage(self) -> dict[str, QueryUsage]:
        """Every tracked query by ``"<table>:<digest>"`` (what the guide inspects)."""
        return self._usage.tracked

    def should_warm_cache(self, model: str | None = None) -> bool:
        """True when warming is enabled and ``warm_interval_seconds`` passed since the last
        warm of ``model`` (a table name), or, without one, of any model this config serves.

        ``repo._cache_config`` is this config bound to the repository's model, so the
        guide's ``if repo._cache_config.should_warm_cache(): await repo.warm_cache()`` asks
        about that repository's own model.
        """
        if not self.warming_config.enabled:
            return False
        tables = [model] if model is not None else [c.table for c in self._caches.values()]
        interval = self.warming_config.warm_interval_seconds
        now = self.clock()
        return any(
            table not in self._last_warm_at or now - self._last_warm_at[table] >= interval
            for table in tables or [""]
        )

    def bound_to(self, table: str) -> ModelCacheConfig:
        """This config as seen from one model's repository (``repo._cache_config``)."""
        return ModelCacheConfig(self, table)

    def get_popular_queries(self, model: str | None = None) -> list[QueryUsage]:
        """The most used queries (at least ``min_usage_count`` uses), most used first.

        With Redis the counts are fleet-wide as of this process's last usage sync (every
        ``usage_flush_every`` uses and at every warm); ``model`` narrows to one table.
        """
        warming = self.warming_config
        ranked = []
        for key, usage in self._usage.tracked.items():
            if model is not None and usage.model != model:
                continue
            score = self._fleet_scores.get(key)
            if score is None:
                score = usage.count
            else:
                # The synced score lacks this process's uses since the sync: add them, or a
                # query used again after a warm stays unpopular until the next sync.
                score += self._usage.pending.get(usage.model, {}).get(usage.digest, 0.0)
            if score >= warming.min_usage_count:
                ranked.append((score, key, usage))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return [usage for _, _, usage in ranked[: warming.popular_queries_limit]]

    def stats(self, model: str | None = None) -> CacheStats:
        """Counters for one table, or summed over every model this config serves."""
        selected = (
            [self._counters.get(model, _Counters())]
            if model is not None
            else list(self._counters.values())
        )
        totals = _Counters()
        for counters in selected:
            for name in vars(totals):
                setattr(totals, name, getattr(totals, name) + getattr(counters, name))
        return CacheStats(
            **vars(totals),
            breaker_state=self.breaker.state,
            last_warm=self._last_warm.get(model) if model is not None else self._latest_warm(),
            untrusted_models=tuple(sorted(self._untrusted)),
        )

    async def settle(self) -> None:
        """Wait until every cache fill started so far has reached the backend.

        Fills run in the background so a miss costs its caller no extra round trip; call
        this before shutting down, or in a test that inspects the backend.
        """
        for cache in list(self._caches.values()):
            await cache.settle()

    # -- shared machinery used by QueryCache and the warmer ------------------------------

    def query_cache(self, info: ModelInfo) -> QueryCache:
        cache = self._caches.get(info.model)
        if cache is None:
            from ._query_cache import QueryCache

            cache = self._caches[info.model] = QueryCache(self, info)
        return cache

    def counters(self, table: str) -> _Counters:
        counters = self._counters.get(table)
        if counters is None:
            counters = self._counters[table] = _Counters()
        return counters

    async def call(self, table: str, operation: Callable[[], Awaitable[Any]]) -> Any:
        """Run one backend operation within the time budget; ``FAILED`` on any trouble."""
        if not self.breaker.allow():
            return _FAILED
        try:
            async with _timeout(self.operation_timeout):
                result = await operation()
        except Exception as error:  # the cache must never fail a repository call
            self.breaker.failed()
            self.counters(table).backend_errors += 1
            self._problems.warning(
                "cache backend %s failed (%s: %s); treating it as a miss",
                type(self.backend).__name__,
                type(error).__name__,
                error,
            )
            return _FAILED
        self.breaker.succeeded()
        return result

    def record_use(self, table: str, operation: str, digest: str, spec: bytes | None) -> bool:
        """Count one use of a query; True when enough uses are pending to sync them."""
        key = f"{table}:{digest}"
        usage = self._usage.tracked.get(key)
        if usage is None:
            from ._keys import decode_spec

            usage = QueryUsage(table, operation, digest, decode_spec(spec) if spec else None)
            self._usage.tracked[key] = usage
            if spec is not None:
                self._usage.pending_specs.setdefault(table, {})[digest] = spec
        usage.count += 1
        usage.last_used = self.clock()
        pending = self._usage.pending.setdefault(table, {})
        pending[digest] = pending.get(digest, 0.0) + 1
        self._usage.pending_total += 1
        return self._usage.pending_total >= self.usage_flush_every

    def mark_warmed(self, report: WarmReport) -> None:
        self._last_warm_at[report.model] = self.clock()
        self._last_warm[report.model] = report

    def _latest_warm(self) -> WarmReport | None:
        reports = list(self._last_warm.values())
        return max(reports, key=lambda r: r.started_at) if reports else None

    def set_fleet_scores(self, table: str, scores: dict[str, float]) -> None:
        for key in [k for k in self._fleet_scores if k.startswith(f"{table}:")]:
            del self._fleet_scores[key]
        self._fleet_scores.update({f"{table}:{digest}": s for digest, s in scores.items()})

    def take_pending_usage(self, table: str) -> tuple[dict[str, float], dict[str, bytes]]:
        counts = self._usage.pending.pop(table, {})
        specs = self._usage.pending_specs.pop(table, {})
        self._usage.pending_total -= int(sum(counts.values()))
        return counts, specs

    def restore_pending_usage(
        self, table: str, counts: dict[str, float], specs: dict[str, bytes]
    ) -> None:
        pending = self._usage.pending.setdefault(table, {})
        for digest, count in counts.items():
            pending[digest] = pending.get(digest, 0.0) + count
        self._usage.pending_specs.setdefault(table, {}).update(specs)
        self._usage.pending_total += int(sum(counts.values()))

    def is_trusted(self, table: str) -> bool:
        return table not in self._untrusted

    def distrust(self, table: str) -> None:
        self._untrusted.add(table)

    def trust(self, table: str) -> None:
        self._untrusted.discard(table)


FAILED = _FAILED
"""What ``CacheConfig.call`` returns when the backend could not answer."""


def _timeout(seconds: float) -> Any:
    import asyncio

    return asyncio.timeout(seconds)


class ModelCacheConfig:
    """A :class:`CacheConfig` bound to one model: what ``repo._cache_config`` returns.

    The guide calls ``should_warm_cache()``, ``get_popular_queries()`` and ``_query_usage`` on
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
        return {k: u for k, u in self.config._query_usage.items() if u.model == self.table}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.config, name)
