"""The running cache of one ``CacheConfig``: what changes while the application runs.

Invariant: one ``CacheRuntime`` per config, made by the config and shared by every repository
using it; it holds state only (the guard and its breaker, statistics, usage counts, which
models are trusted, when each was last warmed, the per-model caches) and never reads a
setting after it is made: the policy code above passes the settings it applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .._telemetry import watch_cache
from ._guard import CircuitBreaker, Guard
from ._stats import CacheStats, Stats
from ._usage import UsageTracker

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._stats import WarmReport

__all__ = ["CacheRuntime", "ModelCache"]


class ModelCache(Protocol):
    """What the runtime needs of a per-model cache (``_query_cache.QueryCache``)."""

    @property
    def table(self) -> str: ...

    async def settle(self) -> None: ...


class CacheRuntime:
    """Guard, statistics, usage, trust, warm history and the registry of model caches."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        operation_timeout: float,
        breaker_threshold: int,
        breaker_reset_seconds: float,
        usage_flush_every: int,
        backend_name: Callable[[], str],
    ) -> None:
        self.clock = clock
        self.backend_name = backend_name
        self.stats = Stats()
        self.guard = Guard(
            operation_timeout,
            CircuitBreaker(breaker_threshold, breaker_reset_seconds, clock),
            clock,
            self.stats.backend_error,
            backend_name,
        )
        self.usage = UsageTracker(self.guard, clock, usage_flush_every)
        self.models: dict[type[Any], ModelCache] = {}
        """The cache of each model, made by ``_query_cache.query_cache_for``."""
        self._untrusted: set[str] = set()
        self._last_warm_at: dict[str, float] = {}
        self._last_warm: dict[str, WarmReport] = {}
        watch_cache(self)  # its counters and breaker, in the metrics while it lives

    # -- trust: a model whose invalidation failed is bypassed until a bump succeeds ------

    def is_trusted(self, table: str) -> bool:
        return table not in self._untrusted

    def distrust(self, table: str) -> None:
        self._untrusted.add(table)

    def trust(self, table: str) -> None:
        self._untrusted.discard(table)

    # -- warm history --------------------------------------------------------------------

    def mark_warmed(self, report: WarmReport) -> None:
        self._last_warm_at[report.model] = self.clock()
        self._last_warm[report.model] = report

    def due_for_warm(self, tables: list[str], interval: float) -> bool:
        """Has ``interval`` passed since the last warm of any of ``tables``?"""
        now = self.clock()
        return any(
            table not in self._last_warm_at or now - self._last_warm_at[table] >= interval
            for table in tables
        )

    def tables(self) -> list[str]:
        return [cache.table for cache in self.models.values()]

    # -- views ---------------------------------------------------------------------------

    def snapshot(self, table: str | None) -> CacheStats:
        return CacheStats(
            **self.stats.totals(table),
            breaker_state=self.guard.breaker.state,
            last_warm=self._last_warm.get(table) if table is not None else self._latest_warm(),
            untrusted_models=tuple(sorted(self._untrusted)),
        )

    async def settle(self) -> None:
        for cache in list(self.models.values()):
            await cache.settle()

    def _latest_warm(self) -> WarmReport | None:
        reports = list(self._last_warm.values())
        return max(reports, key=lambda r: r.started_at) if reports else None
