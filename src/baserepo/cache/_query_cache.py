"""Read-through caching for one model: generation-checked reads, guarded fills,
single-flight, leases, usage tracking and warming. The policy half of the cache; backends
only move bytes.

Why a fill can never leave a stale entry: the reader reads the model's generation *before*
its query, and ``fill`` stores only if the generation is still that one. A write bumps the
generation after its commit, so a result read before the commit is either refused at fill
time or, if it was stored first, never served (its generation is no longer current).
The one extra rule is about snapshots: a query that runs in a transaction whose snapshot
predates the generation read (REPEATABLE READ, SERIALIZABLE, SQLite) could return rows
older than that generation, so such reads serve from the cache but never fill it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from .._transactions import has_written
from ._codec import RowCodec, UnsupportedColumn
from ._keys import KeySpace, NotCacheable, encode_spec, spec_digest
from .config import FAILED, QueryUsage, WarmReport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from .config import CacheConfig

__all__ = ["QueryCache"]

logger = logging.getLogger("baserepo.cache")

T = TypeVar("T")

TRACKED_OPERATIONS = frozenset({"list", "count", "get", "get_many"})
_PER_STATEMENT_SNAPSHOT = frozenset({"READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"})
_ISOLATION_KEY = "baserepo.isolation_level"
_LEASE_POLL_SECONDS = 0.01

# Set while warm_cache() replays queries, so replays are not counted as uses.
_replaying: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "baserepo_replaying", default=False
)


class QueryCache:
    """The cache of one model under one :class:`CacheConfig`."""

    def __init__(self, config: CacheConfig, info: ModelInfo) -> None:
        self.config = config
        self.info = info
        self.table = info.name
        self.keys = KeySpace(config.key_prefix, info.name)
        self.codec: RowCodec | None
        try:
            self.codec = RowCodec(info)
        except UnsupportedColumn as unsupported:
            logger.warning(
                "%s is not cached: column type %s cannot be restored exactly from the cache",
                info.model.__name__,
                unsupported,
            )
            self.codec = None
        self._flights: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- reads ---------------------------------------------------------------------------

    async def fetch(
        self,
        session: AsyncSession,
        operation: str,
        spec: dict[str, Any],
        load: Callable[[], Awaitable[T]],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
    ) -> T:
        """``load()``'s result, from the cache when a current entry exists."""
        config = self.config
        if not config.enabled or self.codec is None:
            return await load()
        try:
            encoded_spec = encode_spec({"operation": operation, **spec})
        except NotCacheable:
            return await load()
        digest = spec_digest(encoded_spec)
        counters = config.counters(self.table)
        if has_written(session, self.info.model):
            # Our own uncommitted writes are invisible to others; never serve or store them.
            counters.bypasses += 1
            return await load()
        if (
            config.warming_config.track_usage
            and operation in TRACKED_OPERATIONS
            and not _replaying.get()
            and config.record_use(self.table, operation, digest, encoded_spec)
        ):
            await self.sync_usage()
        if not config.is_trusted(self.table) and not await self._make_safe():
            counters.bypasses += 1
            return await load()

        key = self.keys.entry(operation, digest)
        lease_key = self.keys.lease(digest)
        entry = await config.call(
            self.table,
            lambda: config.backend.read_with_lease(self.keys.generation, key, lease_key),
        )
        if entry is FAILED:
            counters.misses += 1
            return await load()
        generation, payload, lease_taken = entry
        if payload is None:
            flight = self._flights.get((key, generation))
            if flight is not None:
                payload = await asyncio.shield(flight)
            elif lease_taken:
                # Another process is filling the entry: wait briefly for it.
                payload = await self._wait_for_fill(key, generation)
        if payload is not None:
            # Served without the database: from the backend, or from the bytes of the query
            # another caller of this process is running (single-flight).
            counters.hits += 1
            return decode(payload)
        counters.misses += 1
        return await self._lead(session, key, generation, lease_key, load, encode)

    async def _lead(
        self,
        session: AsyncSession,
        key: str,
        generation: int,
        lease_key: str,
        load: Callable[[], Awaitable[T]],
        encode: Callable[[T], bytes],
    ) -> T:
        config = self.config
        flight_key = (key, generation)
        flight: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = flight
        payload = None
        may_fill = False
        token = uuid.uuid4().hex
        # The lease is taken while the query runs, not before it: waiting for it would add a
        # round trip to every miss. Processes arriving from now on see it and wait for us.
        lease: asyncio.Task[Any] = asyncio.create_task(
            config.call(
                self.table,
                lambda: config.backend.acquire_lease(lease_key, token, config.lease_seconds),
            )
        )
        try:
            may_fill = await self._snapshot_is_fresh(session)
            result = await load()
            payload = self._encode(encode, result)
        finally:
            flight.set_result(payload)
            # The caller gets its rows now; storing them happens in the background, and the
            # flight stays open until it lands so that callers arriving meanwhile share it.
            self._in_background(
                self._store(flight_key, payload if may_fill else None, lease_key, token, lease)
            )
        return result

    async def _store(
        self,
        flight_key: tuple[str, int],
        payload: bytes | None,
        lease_key: str,
        token: str,
        lease: asyncio.Task[Any],
    ) -> None:
        config = self.config
        key, generation = flight_key
        try:
            held = (await lease) is True
            if payload is None:
                if held:
                    await config.call(
                        self.table, lambda: config.backend.release_lease(lease_key, token)
                    )
                return
            # Without the lease (another process took it first) we still fill: the
            # generation check keeps it safe, and the entry is there sooner.
            stored = await config.call(
                self.table,
                lambda: config.backend.fill_and_release(
                    self.keys.generation,
                    key,
                    generation,
                    payload,
                    config.default_ttl,
                    lease_key,
                    token,
                ),
            )
            counters = config.counters(self.table)
            if stored is True:
                counters.fills += 1
            elif stored is False:
                counters.stale_fills_rejected += 1
        finally:
            self._flights.pop(flight_key, None)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait until every fill started so far has reached the backend."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _encode(self, encode: Callable[[T], bytes], result: T) -> bytes | None:
        try:
            return encode(result)
        except UnsupportedColumn:
            return None

    async def _snapshot_is_fresh(self, session: AsyncSession) -> bool:
        """Will the query see every commit made before we read the generation?"""
        transaction = session.sync_session.get_transaction()
        if transaction is None:
            return True  # our query opens the transaction, after the generation read
        known = session.sync_session.info.get(_ISOLATION_KEY)
        if known is None or known[0] is not transaction:
            connection = await session.connection()
            level = str(await connection.get_isolation_level()).replace("-", " ").upper()
            known = (transaction, level)
            session.sync_session.info[_ISOLATION_KEY] = known
        return bool(known[1] in _PER_STATEMENT_SNAPSHOT)

    async def _wait_for_fill(self, key: str, generation: int) -> bytes | None:
        """Poll for the lease holder's entry for up to ``lease_wait_seconds``; if the holder
        is in this process, join its flight instead."""
        config = self.config
        deadline = config.clock() + config.lease_wait_seconds
        while config.clock() < deadline:
            flight = self._flights.get((key, generation))
            if flight is not None:
                return await asyncio.shield(flight)
            await asyncio.sleep(_LEASE_POLL_SECONDS)
            entry = await config.call(
                self.table, lambda: config.backend.read(self.keys.generation, key)
            )
            if entry is FAILED or entry[0] != generation:
                return None
            if entry[1] is not None:
                payload: bytes = entry[1]
                return payload
        return None

    # -- invalidation --------------------------------------------------------------------

    async def invalidate(self) -> None:
        """Make every entry of the model stale; on failure, stop trusting the cache."""
        config = self.config
        counters = config.counters(self.table)
        counters.invalidations += 1
        bumped = await config.call(self.table, lambda: config.backend.bump(self.keys.generation))
        if bumped is FAILED:
            counters.invalidation_failures += 1
            # Entries written before this write must not be served after it: bypass the
            # model until a later bump reaches the backend.
            config.distrust(self.table)

    async def invalidate_pattern(self, pattern: str) -> int:
        config = self.config
        counters = config.counters(self.table)
        counters.invalidations += 1
        deleted = await config.call(
            self.table, lambda: config.backend.delete_pattern(self.keys.pattern(pattern))
        )
        if deleted is FAILED:
            counters.invalidation_failures += 1
            config.distrust(self.table)
            return 0
        if pattern.strip(":") == "*":
            await self.invalidate()
        return int(deleted)

    async def _make_safe(self) -> bool:
        config = self.config
        bumped = await config.call(self.table, lambda: config.backend.bump(self.keys.generation))
        if bumped is FAILED:
            return False
        config.trust(self.table)
        return True

    # -- usage and warming ---------------------------------------------------------------

    async def sync_usage(self) -> None:
        """Send pending use counts to the backend and read back the fleet's top queries."""
        config = self.config
        warming = config.warming_config
        counts, specs = config.take_pending_usage(self.table)
        if counts:
            sent = await config.call(
                self.table,
                lambda: config.backend.incr_usage(
                    self.keys.usage,
                    self.keys.usage_specs,
                    counts,
                    specs,
                    warming.max_tracked_queries,
                ),
            )
            if sent is FAILED:
                config.restore_pending_usage(self.table, counts, specs)
                return
        top = await config.call(
            self.table,
            lambda: config.backend.top_usage(
                self.keys.usage, self.keys.usage_specs, warming.max_tracked_queries, 0.0
            ),
        )
        if top is FAILED:
            return
        scores = {}
        from ._keys import decode_spec

        for digest, score, spec in top:
            scores[digest] = score
            tracked_key = f"{self.table}:{digest}"
            if tracked_key not in config._query_usage and spec is not None:
                decoded = decode_spec(spec)
                operation = str(decoded.pop("operation", "list"))
                config._query_usage[tracked_key] = QueryUsage(
                    self.table, operation, digest, decoded, 0
                )
        config.set_fleet_scores(self.table, scores)

    async def warm(self, replay: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> WarmReport:
        """Replay the popular queries through the guarded fill path."""
        config = self.config
        started = config.clock()
        await self.sync_usage()
        popular = config.get_popular_queries(model=self.table)
        counters = config.counters(self.table)
        warmed = already = failed = 0
        token = _replaying.set(True)
        try:
            for usage in popular:
                spec = _replayable(usage)
                if spec is None:
                    failed += 1
                    continue
                fills, hits = counters.fills, counters.hits
                try:
                    await replay(usage.operation, spec)
                    await self.settle()
                except Exception:
                    logger.exception("could not replay popular query %s", usage.digest)
                    failed += 1
                    continue
                if counters.fills > fills:
                    warmed += 1
                elif counters.hits > hits:
                    already += 1
                else:
                    failed += 1
        finally:
            _replaying.reset(token)
        await self._decay()
        report = WarmReport(
            self.table, warmed, already, failed, started, config.clock() - started, tuple(popular)
        )
        config.mark_warmed(report)
        return report

    async def _decay(self) -> None:
        config = self.config
        factor = config.warming_config.decay_factor
        await config.call(self.table, lambda: config.backend.decay_usage(self.keys.usage, factor))
        for usage in config._query_usage.values():
            if usage.model == self.table:
                usage.count *= factor
        await self.sync_usage()


def _replayable(usage: QueryUsage) -> dict[str, Any] | None:
    if usage.spec is None:
        return None
    spec = dict(usage.spec)
    spec.pop("operation", None)
    return spec


def codec_of(cache: QueryCache) -> RowCodec:
    if cache.codec is None:
        raise UnsupportedColumn(cache.table)
    return cache.codec
