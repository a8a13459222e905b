"""Step 9 of the tour: the guide's query cache, cold against cached, popular queries, warming
and invalidation, on the in-process backend or on Redis.

On Redis the step works under a key prefix of its own run and deletes its keys at the end.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from baserepo import CacheConfig, CacheWarmingConfig

from ._model import User, UserRepository
from ._settings import CACHE_KEY_PREFIX, CACHED_READS, redact

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from baserepo import CacheStats, EventBus

    from ._reporters import Reporter

__all__ = ["query_cache"]


async def query_cache(
    session: AsyncSession, out: Reporter, bus: EventBus, client: Any, redis_url: str | None
) -> dict[str, Any]:
    """Run the cache scenarios on ``client`` (a Redis client, see
    :func:`baserepo.cache.connect.connect_redis`), or in-process when it is None."""
    out.section("9. Query cache: cold vs cached, popular queries, warming, invalidation")
    # A prefix of this run's own: entries of an earlier run (of another table that had the
    # same name) must never be served, and this run's keys are deleted at the end.
    prefix = f"{CACHE_KEY_PREFIX}-{uuid.uuid4().hex[:8]}"
    warming_config = CacheWarmingConfig(
        enabled=True,
        popular_queries_limit=10,
        min_usage_count=5,
        warm_interval_seconds=3600,
        track_usage=True,
    )
    cache_config = CacheConfig(
        redis_client=client, default_ttl=600, warming_config=warming_config, key_prefix=prefix
    )
    backend = f"Redis at {redact(redis_url)}" if redis_url else "in-process (no server)"
    out.say(f"Cache backend: {backend}; keys under {prefix}:")
    repo = UserRepository(User, session, cache_config, event_bus=bus)
    try:
        return await _cache_scenarios(
            session, repo, cache_config, out, "redis" if client else "memory"
        )
    finally:
        await cache_config.settle()
        if client is not None:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1_000)]
            if keys:
                await client.unlink(*keys)


async def _cache_scenarios(
    session: AsyncSession,
    repo: UserRepository,
    cache_config: CacheConfig,
    out: Reporter,
    backend: str,
) -> dict[str, Any]:
    def stats() -> CacheStats:
        return cache_config.stats(User.__tablename__)  # what repo.cache_stats() returns

    async def served(call: Callable[[], Awaitable[Any]]) -> tuple[str, float]:
        """Run one read as a request would (no transaction left open); hit, miss or bypass."""
        before = stats()
        start = time.perf_counter()
        await call()
        seconds = time.perf_counter() - start
        await session.commit()
        after = stats()
        if after.hits > before.hits:
            return "hit", seconds
        return ("miss" if after.misses > before.misses else "bypass"), seconds

    # Each read starts outside a transaction, as a web request does: a read in a transaction
    # whose snapshot may predate the cache's generation serves from the cache but never fills.
    await session.commit()

    def guide_query() -> Awaitable[Any]:
        return repo.list(limit=100, is_active=True)

    # The guide's "Cache Performance Monitoring".
    cold_kind, cold_time = await served(guide_query)
    await cache_config.settle()  # the fill runs in the background: let it land, untimed
    cached = [await served(guide_query) for _ in range(CACHED_READS)]
    cached_time = statistics.median(seconds for _, seconds in cached)
    speedup = cold_time / cached_time if cached_time > 0 else 0
    out.say(
        f"Cold list(limit=100, is_active=True): {cold_time * 1000:.2f} ms ({cold_kind}); "
        f"cached: {cached_time * 1000:.3f} ms (median of {CACHED_READS} hits)"
    )
    out.say(f"Cache speedup: {speedup:.1f}x")

    # Popular queries: with the guide's query, three are used at least min_usage_count (5)
    # times, two are not.
    first_id = await session.scalar(select(func.min(User.id)))
    await session.commit()
    usage: list[tuple[Callable[[], Awaitable[Any]], int]] = [
        (lambda: repo.count(is_active=True), 6),
        (lambda: repo.list(department="sales", limit=20), 5),
        (lambda: repo.get(first_id), 3),
        (lambda: repo.list(department="qa"), 2),
    ]
    for call, times in usage:
        for _ in range(times):
            await served(call)
            await cache_config.settle()
    # cache_config is the guide's repo._cache_config. `_query_usage` is the one underscored
    # name the demo reads: it is the guide's own spelling, kept public by the cache for it.
    popular_queries = cache_config.get_popular_queries()
    usage_stats = cache_config._query_usage
    # Counts as they are now: warming decays them (so yesterday's hot queries fade).
    popular_uses = sorted((q.operation, q.usage_count) for q in popular_queries)
    tracked = len(usage_stats)
    out.say(f"Popular queries: {len(popular_queries)}")
    out.say(f"Total tracked queries: {tracked}")
    out.table(
        "Popular queries (used at least 5 times)",
        ("operation", "query", "uses"),
        [(q.operation, _describe(q.spec), f"{q.usage_count:g}") for q in popular_queries],
    )

    # The guide's "Cache Management": a bulk write invalidates (after its commit), then the
    # popular queries are warmed again before anyone asks for them.
    created = await repo.bulk_create(
        [{"name": f"Cached {i}", "email": f"cached{i}@example.com"} for i in range(10)]
    )
    should_warm = cache_config.should_warm_cache()
    report = await repo.warm_cache()
    out.say(
        f"bulk_create of {created.success_count} users invalidated the model's entries; "
        f"should_warm_cache(): {should_warm}"
    )
    out.say(
        f"warm_cache(): {report.warmed} queries warmed, {report.already_cached} already "
        f"cached, {report.failed} failed, in {report.duration_seconds * 1000:.1f} ms"
    )
    after_warm_kind, _ = await served(guide_query)
    out.say(
        f"The guide's query after warming: {after_warm_kind}; should_warm_cache() now: "
        f"{cache_config.should_warm_cache()}"
    )

    # invalidate_cache(pattern) deletes the matching entries and then moves the generation
    # (deleting alone would let a reader that read the old rows store them right after), so
    # the kept count entry is retired too: refreshed from the database on its next read.
    invalidated = await repo.invalidate_cache("list:*")
    list_kind, _ = await served(guide_query)
    count_kind, _ = await served(lambda: repo.count(is_active=True))
    await cache_config.settle()
    count_refreshed_kind, _ = await served(lambda: repo.count(is_active=True))
    out.say(
        f'invalidate_cache("list:*"): {invalidated} list entries deleted, generation moved; '
        f"next list(): {list_kind}, next count(): {count_kind} (its entry was kept but "
        f"retired, so it was read again), then count(): {count_refreshed_kind}"
    )

    final = stats()
    out.say(
        f"Stats: {final.hits} hits, {final.misses} misses, hit ratio {final.hit_ratio:.0%}; "
        f"{final.fills} fills, {final.stale_fills_rejected} stale fills refused, "
        f"{final.invalidations} invalidations, {final.backend_errors} backend errors, "
        f"breaker {final.breaker_state}"
    )
    return {
        "backend": backend,
        "key_prefix": cache_config.key_prefix,
        "cold": cold_kind,
        "cached": [kind for kind, _ in cached],
        "cold_seconds": round(cold_time, 6),
        "cached_seconds": round(cached_time, 6),
        "speedup": round(speedup, 1),
        "popular": len(popular_queries),
        "popular_uses": popular_uses,
        "tracked": tracked,
        "created": created.success_count,
        "should_warm": should_warm,
        "warmed": report.warmed,
        "already_cached": report.already_cached,
        "warm_failed": report.failed,
        "after_warm": after_warm_kind,
        "invalidated": invalidated,
        "list_after_invalidate": list_kind,
        "count_after_invalidate": count_kind,
        "count_refreshed": count_refreshed_kind,
        "hits": final.hits,
        "misses": final.misses,
        "hit_ratio": round(final.hit_ratio, 3),
        "fills": final.fills,
        "backend_errors": final.backend_errors,
    }


def _describe(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "?"
    shown = {k: v for k, v in spec.items() if v not in (None, False, {}) and k != "operation"}
    return ", ".join(f"{k}={v!r}" for k, v in shown.items())
