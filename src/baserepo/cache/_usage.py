"""Popular-query tracking, all of it: counting uses, ranking them, and syncing the counts
with the backend so that, with Redis, popularity is fleet-wide.

Invariant: every use is counted exactly once fleet-wide. A use is counted locally at once
and kept as a pending increment until a sync hands it to the backend; a sync that fails puts
its increments back, and a sync that succeeds replaces the local scores with the fleet's.
Replays by the warmer (``not_counted()``) are not uses.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._guard import FAILED
from ._keys import decode_spec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._guard import Guard
    from ._keys import KeySpace
    from ._protocol import CacheBackend

__all__ = ["TRACKED_OPERATIONS", "QueryUsage", "UsageTracker"]

TRACKED_OPERATIONS = frozenset({"list", "page", "count", "get", "get_many"})

# Set while warm_cache() replays queries, so replays are not counted as uses.
_replaying: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "baserepo_replaying", default=False
)


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


class UsageTracker:
    """The use counts of every query one config has seen or synced.

    Args:
        guard: runs the backend calls of a sync.
        clock: monotonic seconds (``last_used``).
        flush_every: pending increments that make ``record`` ask for a sync.
    """

    def __init__(self, guard: Guard, clock: Callable[[], float], flush_every: int) -> None:
        self.tracked: dict[str, QueryUsage] = {}
        """Every tracked query by ``"<table>:<digest>"`` (docs/guide.md's ``_query_usage``)."""
        self._guard = guard
        self._clock = clock
        self._flush_every = flush_every
        self._pending: dict[str, dict[str, float]] = {}
        self._pending_specs: dict[str, dict[str, bytes]] = {}
        self._pending_totals: dict[str, int] = {}
        self._fleet_scores: dict[str, float] = {}

    @staticmethod
    @contextlib.contextmanager
    def not_counted() -> Iterator[None]:
        """Reads inside this block are replays, not uses."""
        token = _replaying.set(True)
        try:
            yield
        finally:
            _replaying.reset(token)

    def record(self, table: str, operation: str, digest: str, spec: bytes | None) -> bool:
        """Count one use of a query; True when enough uses are pending to sync them."""
        if operation not in TRACKED_OPERATIONS or _replaying.get():
            return False
        key = f"{table}:{digest}"
        usage = self.tracked.get(key)
        if usage is None:
            usage = QueryUsage(table, operation, digest, decode_spec(spec) if spec else None)
            self.tracked[key] = usage
            if spec is not None:
                self._pending_specs.setdefault(table, {})[digest] = spec
        usage.count += 1
        usage.last_used = self._clock()
        pending = self._pending.setdefault(table, {})
        pending[digest] = pending.get(digest, 0.0) + 1
        self._pending_totals[table] = total = self._pending_totals.get(table, 0) + 1
        # This table's own uses: sync() sends one table's counts, so another table's waiting
        # uses must not make every read of this one sync.
        return total >= self._flush_every

    def of_model(self, table: str) -> dict[str, QueryUsage]:
        return {k: u for k, u in self.tracked.items() if u.model == table}

    def popular(self, table: str | None, min_count: float, limit: int) -> list[QueryUsage]:
        """The ``limit`` most used queries with at least ``min_count`` uses, most used first."""
        ranked = []
        for key, usage in self.tracked.items():
            if table is not None and usage.model != table:
                continue
            score = self._fleet_scores.get(key)
            if score is None:
                score = usage.count
            else:
                # The synced score lacks this process's uses since the sync: add them, or a
                # query used again after a warm stays unpopular until the next sync.
                score += self._pending.get(usage.model, {}).get(usage.digest, 0.0)
            if score >= min_count:
                ranked.append((score, key, usage))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return [usage for _, _, usage in ranked[:limit]]

    async def sync(
        self, table: str, keys: KeySpace, backend: CacheBackend, max_tracked: int
    ) -> None:
        """Send ``table``'s pending counts to the backend and read back the fleet's top."""
        counts = self._pending.pop(table, {})
        specs = self._pending_specs.pop(table, {})
        self._pending_totals.pop(table, None)
        if counts:
            sent = await self._guard.call(
                table,
                lambda: backend.incr_usage(
                    keys.usage, keys.usage_specs, counts, specs, max_tracked
                ),
            )
            if sent is FAILED:
                self._restore(table, counts, specs)
                return
        top = await self._guard.call(
            table, lambda: backend.top_usage(keys.usage, keys.usage_specs, max_tracked, 0.0)
        )
        if top is FAILED:
            return
        scores = {}
        for digest, score, spec in top:
            scores[digest] = score
            key = f"{table}:{digest}"
            tracked = self.tracked.get(key)
            if tracked is not None:
                tracked.count = score  # the fleet-wide score, decayed at every warm
            elif spec is not None:
                decoded = decode_spec(spec)
                operation = str(decoded.pop("operation", "list"))
                self.tracked[key] = QueryUsage(table, operation, digest, decoded, score)
        for key in [k for k in self._fleet_scores if k.startswith(f"{table}:")]:
            del self._fleet_scores[key]
        self._fleet_scores.update({f"{table}:{digest}": s for digest, s in scores.items()})

    async def decay(
        self, table: str, keys: KeySpace, backend: CacheBackend, factor: float, max_tracked: int
    ) -> None:
        """Age ``table``'s scores (here and in the backend) by ``factor``, then sync."""
        await self._guard.call(table, lambda: backend.decay_usage(keys.usage, factor))
        for usage in self.tracked.values():
            if usage.model == table:
                usage.count *= factor
        await self.sync(table, keys, backend, max_tracked)

    def _restore(self, table: str, counts: dict[str, float], specs: dict[str, bytes]) -> None:
        pending = self._pending.setdefault(table, {})
        for digest, count in counts.items():
            pending[digest] = pending.get(digest, 0.0) + count
        self._pending_specs.setdefault(table, {}).update(specs)
        self._pending_totals[table] = self._pending_totals.get(table, 0) + int(sum(counts.values()))
