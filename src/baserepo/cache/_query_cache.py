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
import math
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
_SNAPSHOT_GENERATIONS_KEY = "baserepo.snapshot_generations"
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
        self._generation_creation: asyncio.Future[Any] | None = None
        # Generations this process created (counted) and the last one: a reader whose "no
        # generation" answer predates a creation that has finished since uses that one.
        self._generations_created = 0
        self._created_generation = 0

    # -- reads ---------------------------------------------------------------------------

    async def fetch(
        self,
        session: AsyncSession,
        operation: str,
        spec: dict[str, Any],
        load: Callable[[], Awaitable[T]],
        prepare: Callable[[T], Callable[[], bytes]],
        decode: Callable[[bytes], T],
    ) -> T:
        """``load()``'s result, from the cache when a current entry exists.

        ``prepare(result)`` captures what must be stored (cheaply, before the caller can
        change the instances) and returns the function that makes the bytes later.
        """
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
        created_before_read = self._generations_created
        entry = await config.call(
            self.table,
            lambda: config.backend.read_with_lease(self.keys.generation, key, lease_key),
        )
        if entry is FAILED:
            counters.misses += 1
            return await load()
        generation, payload, lease_taken = entry
        if generation == 0:
            # No generation yet (first use, or the backend lost its data): create one from
            # the clock before reading the database. Fills at 0 are refused, so a reader
            # from before a Redis restart can never store what it read back then.
            created = await self._create_generation(created_before_read)
            if created is FAILED:
                counters.misses += 1
                return await load()
            generation, payload = int(created), None
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
        return await self._lead(session, key, generation, lease_key, load, prepare)

    async def _lead(
        self,
        session: AsyncSession,
        key: str,
        generation: int,
        lease_key: str,
        load: Callable[[], Awaitable[T]],
        prepare: Callable[[T], Callable[[], bytes]],
    ) -> T:
        config = self.config
        flight_key = (key, generation)
        flight: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = flight
        # A query that outlives lease_after_seconds takes the fill lease, so processes that
        # miss meanwhile wait for our entry instead of running it too. Fast queries never
        # pay the round trip: a stampede of them costs less than coordinating it.
        lease = _Lease()
        timer = asyncio.get_running_loop().call_later(
            config.lease_after_seconds, self._take_lease, lease, lease_key
        )
        serialize: Callable[[], bytes] | None = None
        may_fill = False
        try:
            opens_transaction = session.sync_session.get_transaction() is None
            may_fill = await self._snapshot_is_fresh(session, generation)
            result = await load()
            if opens_transaction:
                self._remember_snapshot_generation(session, generation)
            serialize = self._prepare(prepare, result)
        finally:
            timer.cancel()
            # The caller gets its rows now; turning them into bytes and storing them happen
            # in the background, and the flight stays open until the entry has landed so
            # that callers arriving meanwhile share it.
            self._in_background(
                self._store(flight, flight_key, serialize, may_fill, lease_key, lease)
            )
        return result

    def _take_lease(self, lease: _Lease, lease_key: str) -> None:
        config = self.config
        token = lease.token = uuid.uuid4().hex
        lease.task = asyncio.create_task(
            config.call(
                self.table,
                lambda: config.backend.acquire_lease(lease_key, token, config.lease_seconds),
            )
        )

    async def _store(
        self,
        flight: asyncio.Future[bytes | None],
        flight_key: tuple[str, int],
        serialize: Callable[[], bytes] | None,
        may_fill: bool,
        lease_key: str,
        lease: _Lease,
    ) -> None:
        config = self.config
        key, generation = flight_key
        payload = None
        try:
            try:
                payload = serialize() if serialize is not None else None
            except (UnsupportedColumn, TypeError, ValueError) as unstorable:
                # A value orjson cannot write (an integer beyond 64 bits in a JSON column):
                # the caller already has its rows; this result just is not cached.
                logger.debug("not caching a %s result: %s", self.table, unstorable)
            finally:
                # Rows from a snapshot older than the generation we read must not reach
                # callers that joined the flight either: they started later and may be owed
                # a commit our snapshot missed. None makes each of them run its own query.
                flight.set_result(payload if may_fill else None)
            held = lease.task is not None and (await lease.task) is True
            token = lease.token
            # An untrusted model missed an invalidation: a fill now (at the generation Redis
            # still has, or at 0 after a restart) would hand other processes rows older than
            # that write. Only a successful bump (_make_safe, on the next read) lifts that.
            if payload is None or not may_fill or not config.is_trusted(self.table):
                if held:
                    await config.call(
                        self.table, lambda: config.backend.release_lease(lease_key, token)
                    )
                return
            backend = config.backend
            if held:
                stored = await config.call(
                    self.table,
                    lambda: backend.fill_and_release(
                        self.keys.generation,
                        key,
                        generation,
                        payload,
                        config.default_ttl,
                        lease_key,
                        token,
                    ),
                )
            else:
                # No lease (a fast query, or another process took it first): fill anyway;
                # the generation check keeps it safe, and the entry is there sooner.
                stored = await config.call(
                    self.table,
                    lambda: backend.fill(
                        self.keys.generation, key, generation, payload, config.default_ttl
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

    def _prepare(
        self, prepare: Callable[[T], Callable[[], bytes]], result: T
    ) -> Callable[[], bytes] | None:
        try:
            return prepare(result)
        except UnsupportedColumn:
            return None

    async def _snapshot_is_fresh(self, session: AsyncSession, generation: int) -> bool:
        """Will the query see every commit made before ``generation`` was read?"""
        sync_session = session.sync_session
        transaction = sync_session.get_transaction()
        if transaction is None:
            return True  # our query opens the transaction, after the generation read
        known = sync_session.info.get(_ISOLATION_KEY)
        if known is None or known[0] is not transaction:
            connection = await session.connection()
            level = str(await connection.get_isolation_level()).replace("-", " ").upper()
            known = (transaction, level)
            sync_session.info[_ISOLATION_KEY] = known
        if known[1] in _PER_STATEMENT_SNAPSHOT:
            return True
        # A snapshot taken at the transaction's first read holds everything committed
        # before that read. If one of our reads opened the transaction and the model's
        # generation has not moved since, no write to the model committed in between (a
        # write bumps after its commit), so the snapshot is as fresh as the generation.
        remembered = sync_session.info.get(_SNAPSHOT_GENERATIONS_KEY)
        return bool(
            remembered is not None
            and remembered[0] is transaction
            and remembered[1].get(self.table) == generation
        )

    def _remember_snapshot_generation(self, session: AsyncSession, generation: int) -> None:
        sync_session = session.sync_session
        transaction = sync_session.get_transaction()
        if transaction is not None:
            sync_session.info[_SNAPSHOT_GENERATIONS_KEY] = (transaction, {self.table: generation})

    async def _wait_for_fill(self, key: str, generation: int) -> bytes | None:
        """Poll for the lease holder's entry for up to ``lease_wait_seconds``; if the holder
        is in this process, join its flight instead."""
        config = self.config
        # Counted in polls, not read from config.clock: a frozen test clock must not turn
        # this wait into an endless loop.
        for _ in range(max(1, math.ceil(config.lease_wait_seconds / _LEASE_POLL_SECONDS))):
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
        if bumped is not FAILED:
            # Every entry older than this bump is now dead, including any a missed
            # invalidation should have removed: the model can be trusted again.
            config.trust(self.table)
            return
        if bumped is FAILED:
            counters.invalidation_failures += 1
            # Entries written before this write must not be served after it: bypass the
            # model until a later bump reaches the backend.
            config.distrust(self.table)

    async def invalidate_pattern(self, pattern: str) -> int:
        config = self.config
        deleted = await config.call(
            self.table, lambda: config.backend.delete_pattern(self.keys.pattern(pattern))
        )
        # Deleting is not enough: a reader that read the old rows before this call could
        # store them right after it. Moving the generation refuses that fill (and retires
        # the model's other entries too; they are refreshed on their next read). If the
        # bump fails, invalidate() stops trusting the cache; undeleted entries are then
        # only memory.
        await self.invalidate()
        return 0 if deleted is FAILED else int(deleted)

    async def _create_generation(self, created_before_read: int) -> Any:
        """Bump once for every caller of this process that found no generation at the same
        time: a hundred concurrent first reads must share one generation (and so one
        single-flight query), not make a hundred."""
        if self._generations_created != created_before_read:
            # This caller's read was sent before a creation of ours finished and its reply
            # (no generation) handled after. Bumping again would give it a generation of its
            # own (a second query, and the first caller's fill refused); the one just created
            # is as good, since it exists before this caller's query runs. If the backend
            # lost it meanwhile, the fill is refused, as for any reader.
            return self._created_generation
        pending = self._generation_creation
        if pending is None:
            config = self.config
            pending = asyncio.ensure_future(
                config.call(self.table, lambda: config.backend.bump(self.keys.generation))
            )
            self._generation_creation = pending
            pending.add_done_callback(self._generation_created)
        return await asyncio.shield(pending)

    def _generation_created(self, done: asyncio.Future[Any]) -> None:
        self._generation_creation = None
        if not done.cancelled() and done.exception() is None and done.result() is not FAILED:
            self._created_generation = int(done.result())
            self._generations_created += 1

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
            tracked = config._query_usage.get(f"{self.table}:{digest}")
            if tracked is not None:
                tracked.count = score  # the fleet-wide score, decayed at every warm
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
        started, started_at = config.clock(), config.wall_clock()
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
            self.table,
            warmed,
            already,
            failed,
            started_at,
            config.clock() - started,
            tuple(popular),
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


class _Lease:
    """The fill lease of one miss, if its query ran long enough to take one."""

    __slots__ = ("task", "token")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.token = ""


def _replayable(usage: QueryUsage) -> dict[str, Any] | None:
    if usage.spec is None:
        return None
    spec = dict(usage.spec)
    spec.pop("operation", None)
    return spec
