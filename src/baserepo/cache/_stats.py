"""What the cache did: per-model counters, the snapshots ``stats()`` returns, warm reports.

Invariant: counters only ever grow, one set per table, shared by every repository of that
table under one config; a ``CacheStats`` is an immutable snapshot of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ._guard import BreakerState  # noqa: TC001 - resolvable annotations (get_type_hints)
from ._usage import QueryUsage  # noqa: TC001

__all__ = ["CacheStats", "Counters", "Stats", "WarmReport"]


@dataclass
class Counters:
    """The running counts of one table (mutated in place on the hot path)."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    stale_fills_rejected: int = 0
    invalidations: int = 0
    invalidation_failures: int = 0
    bypasses: int = 0
    backend_errors: int = 0


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


_COUNTER_NAMES = tuple(f.name for f in dataclasses.fields(Counters))


class Stats:
    """The counters of every table one config serves."""

    def __init__(self) -> None:
        self._counters: dict[str, Counters] = {}
        self._model_names: dict[str, str] = {}

    def counters(self, table: str) -> Counters:
        counters = self._counters.get(table)
        if counters is None:
            counters = self._counters[table] = Counters()
        return counters

    def name_model(self, table: str, model_name: str) -> None:
        """Metrics report a table's counts under its model class's name (as spans do)."""
        self._model_names[table] = model_name

    def model_name(self, table: str) -> str:
        return self._model_names.get(table, table)

    def by_table(self) -> list[tuple[str, Counters]]:
        """Every table's counters (a copy of the list: metrics read it from their thread)."""
        return list(self._counters.items())

    def backend_error(self, table: str) -> None:
        self.counters(table).backend_errors += 1

    def totals(self, table: str | None) -> dict[str, int]:
        """The counts of ``table``, or summed over every table."""
        selected = (
            [self._counters.get(table, Counters())]
            if table is not None
            else list(self._counters.values())
        )
        return {name: sum(getattr(c, name) for c in selected) for name in _COUNTER_NAMES}
