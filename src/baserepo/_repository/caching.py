"""The repository's side of the query cache: warming, invalidation by pattern, stats."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ..cache._stats import CacheStats, WarmReport
from ..cache._warming import warm
from .pages import PageMethods
from .reads import ReadMethods
from .state import CreateSchemaT, IdT, ModelT, UpdateSchemaT

__all__ = ["CacheMethods", "run_query"]


class CacheMethods(ReadMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """warm_cache, invalidate_cache and cache_stats (on top of the reads, which warming
    replays)."""

    async def warm_cache(self) -> WarmReport:
        """Run the popular queries of this model and store their results.

        Each query runs in a short session of its own on the same engine, so warming stores
        only committed data whatever the state of this repository's session.
        """
        if self._cache is None:
            return WarmReport(self._info.name, 0, 0, 0, 0.0, 0.0)
        return await warm(self._cache, self._replay)

    async def invalidate_cache(self, pattern: str = "*") -> int:
        """Delete this model's cached entries matching ``pattern`` (``"list:*"``, ``"get:*"``,
        ``"*"``); returns how many were deleted. Writes through the repository invalidate by
        themselves; this is for changes made behind its back."""
        if self._cache is None:
            return 0
        return await self._cache.generation.invalidate_pattern(pattern)

    def cache_stats(self) -> CacheStats | None:
        """Hits, misses, fills... of this model's cache, or None without a cache."""
        if self._shared_cache_config is None:
            return None
        return self._shared_cache_config.stats(self._info.name)

    async def _replay(self, operation: str, spec: dict[str, Any]) -> None:
        bind = self.session.bind
        if not isinstance(bind, AsyncEngine):
            await run_query(self, operation, spec)
            return
        async with AsyncSession(bind, expire_on_commit=False) as session:
            replica = type(self)(
                self.model,
                session,
                self._shared_cache_config,
                event_bus=self.event_bus,
                soft_delete_column=self._soft_delete_column,
                read_replica=self._read_replica,
            )
            await run_query(replica, operation, spec)


async def run_query(
    repository: ReadMethods[Any, Any, Any, Any], operation: str, spec: dict[str, Any]
) -> None:
    include_deleted = bool(spec.get("include_deleted", False))
    if operation == "list":
        await repository.list(
            spec.get("filters") or {},
            limit=spec.get("limit"),
            offset=spec.get("offset"),
            order_by=spec.get("order_by"),
            include_deleted=include_deleted,
        )
    elif operation == "page":
        if not isinstance(repository, PageMethods):
            raise TypeError(f"cannot replay a page query on {type(repository).__name__}")
        await repository.page(
            spec.get("filters") or {},
            limit=spec["limit"],
            after=spec.get("after"),
            order_by=spec.get("order_by"),
            include_deleted=include_deleted,
        )
    elif operation == "count":
        await repository.count(spec.get("filters") or {}, include_deleted=include_deleted)
    elif operation == "get":
        await repository.get(spec["id"], include_deleted=include_deleted)
    elif operation == "get_many":
        await repository.get_many(spec["ids"], include_deleted=include_deleted)
    else:
        raise ValueError(f"cannot replay a {operation!r} query")
