"""An operator's look at one model's cache and the one action that needs no database:
``inspect_cache`` and ``invalidate_model`` (``baserepo cache stats`` / ``invalidate``).

Invariant: these read and move what every process shares (the backend), never a process's
running state, and they raise on backend trouble instead of failing open: an operator must
know when an invalidation did not happen. Hit and miss counters are not here: they are per
process (``CacheConfig.stats()``), so no process can read another's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .._model import model_info
from ..exceptions import ConfigurationError
from ._protocol import DescribableBackend
from ._query_cache import query_cache_for

if TYPE_CHECKING:
    from ._keys import KeySpace
    from ._protocol import BackendView
    from .config import CacheConfig

__all__ = [
    "CacheInspection",
    "InvalidationReport",
    "PopularQuery",
    "inspect_cache",
    "invalidate_model",
]

# Metadata key names after the model's base (``baserepo:v1:{users}:``), as ``_keys`` and the
# Redis backend lay them out.
_GENERATION_KEYS = ("~gen", "~gen:server", "~gen:intents")
_USAGE_KEYS = ("~usage", "~usage-specs")


@dataclass(frozen=True)
class PopularQuery:
    """One query of the model's fleet-wide popularity ranking (``~usage``)."""

    operation: str
    digest: str
    score: float
    """Uses, decayed by ``decay_factor`` at every warm."""
    spec: dict[str, Any] | None
    """The stored query as JSON (typed values tagged, e.g. ``{"$dt": "..."}``); None when
    it could not be stored, so the query cannot be replayed."""
    warmed: bool
    """A warm with the config's ``popular_queries_limit`` and ``min_usage_count`` replays it."""


@dataclass(frozen=True)
class CacheInspection:
    """What the backend holds for one model: ``inspect_cache``'s answer."""

    model: str
    """The model's table name."""
    keys_base: str
    """The common start of the model's keys, ``baserepo:v1:{users}``."""
    server_run_id: str
    """The Redis server run (``INFO server``) holding the model's keys; "" in memory."""
    generation: int | None
    """The stored generation; None before the first read or write (or after a flush)."""
    generation_trusted: bool
    """Moved under the current server run. False after a restart, restore or failover:
    the next read bumps it (docs/cache.md, "Restarts")."""
    generation_moved_at: dt.datetime | None
    """About when the generation last moved (bumps take the server clock in microseconds
    when it is ahead of the counter, which it nearly always is)."""
    entries: int
    """Cached results stored, current or not (until their TTL)."""
    current_entries: int
    """Entries sealed under the current generation and this model's column layout: the
    ones a read can be served."""
    other_layout_entries: int
    """Entries of another column layout (another release of the model, during a deploy)."""
    entry_bytes: int
    """Memory the entries take in the backend."""
    entries_by_kind: dict[str, int]
    """Entries per operation (``list``, ``count``, ``get``, ``get_many``, ``page``)."""
    write_intents: int
    """Writes between their COMMIT and their bump right now; while one stands (or an
    expired one is left) no fill is stored."""
    expired_write_intents: int
    """Intents past their deadline (their writer died); the next fill completes them."""
    leases: int
    """Fill leases held (slow misses being filled)."""
    warm_locks: int
    """Warm intervals claimed by a ``CacheWarmer`` and not yet expired."""
    tracked_queries: int
    """Queries in the popularity ranking (at most ``max_tracked_queries``)."""
    popular_queries: tuple[PopularQuery, ...] = field(default=())
    """The most used queries, most used first (``popular_limit`` of them)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``baserepo cache stats --json``)."""
        moved_at = self.generation_moved_at
        return {
            "model": self.model,
            "keys_base": self.keys_base,
            "server_run_id": self.server_run_id,
            "generation": self.generation,
            "generation_trusted": self.generation_trusted,
            "generation_moved_at": None if moved_at is None else moved_at.isoformat(),
            "entries": {
                "total": self.entries,
                "current": self.current_entries,
                "stale": self.entries - self.current_entries - self.other_layout_entries,
                "other_layouts": self.other_layout_entries,
                "bytes": self.entry_bytes,
                "by_kind": dict(self.entries_by_kind),
            },
            "write_intents": {"live": self.write_intents, "expired": self.expired_write_intents},
            "leases": self.leases,
            "warm_locks": self.warm_locks,
            "tracked_queries": self.tracked_queries,
            "popular_queries": [
                {
                    "operation": query.operation,
                    "digest": query.digest,
                    "score": query.score,
                    "warmed": query.warmed,
                    "spec": query.spec,
                }
                for query in self.popular_queries
            ],
        }


@dataclass(frozen=True)
class InvalidationReport:
    """What ``invalidate_model`` did."""

    model: str
    pattern: str
    deleted: int
    """Entries deleted at once (the pattern's); the others are retired by the generation."""
    generation: int
    """The model's generation after the move."""


def _describable(config: CacheConfig) -> DescribableBackend:
    backend = config.backend
    if not isinstance(backend, DescribableBackend):
        raise ConfigurationError(
            f"{type(backend).__name__} cannot be inspected: it has no describe() method"
        )
    return backend


async def inspect_cache(
    config: CacheConfig, model: type[Any], *, popular_limit: int | None = None
) -> CacheInspection:
    """What ``config``'s backend holds for ``model``: its generation, entries, write intents
    in flight and most used queries. Reads every key of the model (SCAN, never KEYS): an
    operator's occasional look, not for a request's path.

    Args:
        popular_limit: how many popular queries to list (default: the warming config's
            ``popular_queries_limit``).

    Raises:
        ConfigurationError: ``model`` is not a model baserepo can serve, or the backend
            cannot be inspected.
        Exception: the backend's own error (``redis.exceptions.ConnectionError``...): not
            swallowed, unlike the cache's calls on a request's path.
    """
    cache = query_cache_for(config, model_info(model))
    keys = cache.keys
    view = await _describable(config).describe(keys.generation, keys.pattern("*"))
    warming = config.warming_config
    limit = warming.popular_queries_limit if popular_limit is None else popular_limit
    ranking = await config.backend.top_usage(
        keys.usage, keys.usage_specs, warming.max_tracked_queries, 0.0
    )
    popular = tuple(
        PopularQuery(
            operation=str(spec.pop("operation", "list")) if spec is not None else "?",
            digest=digest,
            score=score,
            spec=spec,
            warmed=rank < warming.popular_queries_limit and score >= warming.min_usage_count,
        )
        for rank, (digest, score, raw) in enumerate(ranking[: max(limit, 0)])
        for spec in [None if raw is None else dict(orjson.loads(raw))]
    )
    layout = cache.codec.layout if cache.codec is not None else ""
    return _inspection(view, cache.table, keys, layout, popular, ranking)


def _inspection(
    view: BackendView,
    table: str,
    keys: KeySpace,
    layout: str,
    popular: tuple[PopularQuery, ...],
    ranking: list[Any],
) -> CacheInspection:
    base = f"{keys.base}:"
    entries = current = other_layout = size = leases = warm_locks = 0
    by_kind: dict[str, int] = {}
    for stored in view.keys:
        name = stored.key.removeprefix(base)
        if name.startswith("~lease:"):
            leases += 1
        elif name.startswith("~warm:"):
            warm_locks += 1
        elif name.startswith("~") or name in _GENERATION_KEYS or name in _USAGE_KEYS:
            continue
        else:
            kind, _, rest = name.partition(":")
            entries += 1
            size += stored.size or 0
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if layout and not rest.startswith(f"{layout}."):
                other_layout += 1
            elif stored.generation is not None and stored.generation == view.generation:
                current += 1
    generation = view.generation
    return CacheInspection(
        model=table,
        keys_base=keys.base,
        server_run_id=view.server,
        generation=generation,
        generation_trusted=generation is not None and view.moved_under == view.server,
        generation_moved_at=_moved_at(generation),
        entries=entries,
        current_entries=current,
        other_layout_entries=other_layout,
        entry_bytes=size,
        entries_by_kind=dict(sorted(by_kind.items())),
        write_intents=sum(left > 0 for left in view.intent_seconds_left),
        expired_write_intents=sum(left <= 0 for left in view.intent_seconds_left),
        leases=leases,
        warm_locks=warm_locks,
        tracked_queries=len(ranking),
        popular_queries=popular,
    )


def _moved_at(generation: int | None) -> dt.datetime | None:
    # A generation below a plausible microsecond clock (a counter that outran nothing, or a
    # backend of another kind) says nothing about time.
    if generation is None or generation < 10**15:
        return None
    try:
        return dt.datetime.fromtimestamp(generation / 1_000_000, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


async def invalidate_model(
    config: CacheConfig, model: type[Any], pattern: str = "*"
) -> InvalidationReport:
    """``repo.invalidate_cache(pattern)`` without a repository or a database: delete the
    model's entries matching ``pattern`` (``"*"``, ``"list:*"``), then move its generation,
    so every process refreshes every cached query of the model on its next read.

    Unlike the repository's method it raises when the backend fails (nothing is retried or
    hidden): an operator must know whether the invalidation happened.

    Raises:
        ConfigurationError: ``model`` is not a model baserepo can serve.
        ValueError: an empty pattern.
        Exception: the backend's own error.
    """
    if not pattern.strip(": "):
        raise ValueError('the pattern is empty; use "*" for every entry of the model')
    cache = query_cache_for(config, model_info(model))
    keys = cache.keys
    # As Generation.invalidate_pattern: delete, then move the generation (deleting alone
    # would let a reader that read the old rows before the delete store them after it).
    deleted = await config.backend.delete_pattern(keys.pattern(pattern))
    generation = await config.backend.bump(keys.generation)
    return InvalidationReport(cache.table, pattern, deleted, generation)
