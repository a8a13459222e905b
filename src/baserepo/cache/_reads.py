"""Read-through caching for one model: generation-checked reads, single-flight, fill leases
and guarded fills.

Invariant: a fill can never leave a stale entry. The reader reads the model's generation
*before* its query, and ``fill`` stores only if the generation is still that one. A write
bumps the generation after its commit, so a result read before the commit is either refused
at fill time or, if it was stored first, never served (its generation is no longer current).
The one extra rule is about snapshots: a query that runs in a transaction whose snapshot
predates the generation read (REPEATABLE READ, SERIALIZABLE, SQLite) could return rows
older than that generation, so such reads serve from the cache but never fill it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from .._telemetry import event, span
from .._transactions import has_written
from ._codec import UnsupportedColumn
from ._guard import FAILED
from ._keys import NotCacheable, encode_spec, spec_digest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from sqlalchemy.ext.asyncio import AsyncSession

    from ._invalidation import Generation
    from ._keys import KeySpace
    from ._runtime import CacheRuntime
    from .config import CacheConfig

__all__ = ["Reads"]

logger = logging.getLogger("baserepo.cache")

T = TypeVar("T")

_PER_STATEMENT_SNAPSHOT = frozenset({"READ COMMITTED", "READ UNCOMMITTED", "AUTOCOMMIT"})
_ISOLATION_KEY = "baserepo.isolation_level"
_SNAPSHOT_GENERATIONS_KEY = "baserepo.snapshot_generations"
_LEASE_POLL_SECONDS = 0.01


class Reads:
    """Serves one model's reads from the cache and fills it from their results."""

    def __init__(
        self,
        config: CacheConfig,
        runtime: CacheRuntime,
        model: type[Any],
        table: str,
        keys: KeySpace,
        generation: Generation,
        sync_usage: Callable[[], Awaitable[None]],
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._model = model
        self._table = table
        self._keys = keys
        self._generation = generation
        self._sync_usage = sync_usage
        self._counters = runtime.stats.counters(table)
        self._flights: dict[tuple[str, int], asyncio.Future[bytes | None]] = {}
        self._background: set[asyncio.Task[None]] = set()

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
        config = self._config
        runtime = self._runtime
        if not config.enabled:
            return await load()
        try:
            encoded_spec = encode_spec({"operation": operation, **spec})
        except NotCacheable:
            return await load()
        digest = spec_digest(encoded_spec)
        counters = self._counters
        if has_written(session, self._model):
            # Our own uncommitted writes are invisible to others; never serve or store them.
            counters.bypasses += 1
            event("cache.bypass", {"baserepo.cache.reason": "own_writes"})
            return await load()
        if config.warming_config.track_usage and runtime.usage.record(
            self._table, operation, digest, encoded_spec
        ):
            await self._sync_usage()
        if not runtime.is_trusted(self._table) and not await self._generation.make_safe():
            counters.bypasses += 1
            event("cache.bypass", {"baserepo.cache.reason": "untrusted"})
            return await load()

        keys = self._keys
        key = keys.entry(operation, digest)
        lease_key = keys.lease(digest)
        created_before_read = self._generation.created
        entry = await runtime.guard.call(
            self._table,
            lambda: config.backend.read_with_lease(keys.generation, key, lease_key),
        )
        if entry is FAILED:
            counters.misses += 1
            event("cache.miss", {"baserepo.cache.reason": "backend_failed"})
            return await load()
        generation, payload, lease_taken = entry
        if generation == 0:
            # No generation yet (first use, the backend lost its data, or one it cannot
            # vouch for: restored from a snapshot, moved under another server run): create
            # one above every earlier number before reading the database. Fills at 0 are
            # refused, so a reader from before a Redis restart can never store what it read
            # back then.
            created = await self._generation.create(created_before_read)
            if created is FAILED:
                counters.misses += 1
                event("cache.miss", {"baserepo.cache.reason": "backend_failed"})
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
            event("cache.hit", {"baserepo.cache.key": key})
            return decode(payload)
        counters.misses += 1
        event("cache.miss", {"baserepo.cache.key": key})
        return await self._lead(session, key, generation, lease_key, load, prepare)

    async def settle(self) -> None:
        """Wait until every fill started so far has reached the backend."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _lead(
        self,
        session: AsyncSession,
        key: str,
        generation: int,
        lease_key: str,
        load: Callable[[], Awaitable[T]],
        prepare: Callable[[T], Callable[[], bytes]],
    ) -> T:
        flight_key = (key, generation)
        flight: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._flights[flight_key] = flight
        # A query that outlives lease_after_seconds takes the fill lease, so processes that
        # miss meanwhile wait for our entry instead of running it too. Fast queries never
        # pay the round trip: a stampede of them costs less than coordinating it.
        lease = _Lease()
        timer = asyncio.get_running_loop().call_later(
            self._config.lease_after_seconds, self._take_lease, lease, lease_key
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
        config = self._config
        token = lease.token = uuid.uuid4().hex
        lease.task = asyncio.create_task(
            self._runtime.guard.call(
                self._table,
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
        config = self._config
        guard = self._runtime.guard
        key, generation = flight_key
        payload = None
        try:
            try:
                payload = serialize() if serialize is not None else None
            except (UnsupportedColumn, TypeError, ValueError) as unstorable:
                # A value orjson cannot write (an integer beyond 64 bits in a JSON column):
                # the caller already has its rows; this result just is not cached.
                logger.debug("not caching a %s result: %s", self._table, unstorable)
            finally:
                # Rows from a snapshot older than the generation we read must not reach
                # callers that joined the flight either: they started later and may be owed
                # a commit our snapshot missed. None makes each of them run its own query.
                flight.set_result(payload if may_fill else None)
            held = lease.task is not None and (await lease.task) is True
            token = lease.token
            # An untrusted model missed an invalidation: a fill now (at the generation Redis
            # still has, or at 0 after a restart) would hand other processes rows older than
            # that write. Only a successful bump (make_safe, on the next read) lifts that.
            if payload is None or not may_fill or not self._runtime.is_trusted(self._table):
                if held:
                    await guard.call(
                        self._table, lambda: config.backend.release_lease(lease_key, token)
                    )
                return
            attributes = {
                "baserepo.model": self._model.__name__,
                "baserepo.cache.key": key,
                "baserepo.cache.generation": generation,
                "baserepo.cache.bytes": len(payload),
            }
            # Its own span: the fill runs after the call has returned (and its span ended).
            with span("baserepo.cache.fill", attributes) as filling:
                backend = config.backend
                generation_key = self._keys.generation
                if held:
                    stored = await guard.call(
                        self._table,
                        lambda: backend.fill_and_release(
                            generation_key,
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
                    stored = await guard.call(
                        self._table,
                        lambda: backend.fill(
                            generation_key, key, generation, payload, config.default_ttl
                        ),
                    )
                if stored is True:
                    self._counters.fills += 1
                elif stored is False:
                    self._counters.stale_fills_rejected += 1
                if filling is not None:
                    outcome = {True: "stored", False: "stale_refused"}.get(stored, "failed")
                    filling.set_attribute("baserepo.cache.fill", outcome)
        finally:
            # Only our own flight: callers that joined a flight ending without bytes start a
            # new one under the same key, which must stay open for those joining it.
            if self._flights.get(flight_key) is flight:
                del self._flights[flight_key]

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
            and remembered[1].get(self._table) == generation
        )

    def _remember_snapshot_generation(self, session: AsyncSession, generation: int) -> None:
        sync_session = session.sync_session
        transaction = sync_session.get_transaction()
        if transaction is not None:
            sync_session.info[_SNAPSHOT_GENERATIONS_KEY] = (transaction, {self._table: generation})

    async def _wait_for_fill(self, key: str, generation: int) -> bytes | None:
        """Poll for the lease holder's entry for up to ``lease_wait_seconds``; if the holder
        is in this process, join its flight instead."""
        config = self._config
        generation_key = self._keys.generation
        # Counted in polls, not read from config.clock: a frozen test clock must not turn
        # this wait into an endless loop.
        for _ in range(max(1, math.ceil(config.lease_wait_seconds / _LEASE_POLL_SECONDS))):
            flight = self._flights.get((key, generation))
            if flight is not None:
                return await asyncio.shield(flight)
            await asyncio.sleep(_LEASE_POLL_SECONDS)
            entry = await self._runtime.guard.call(
                self._table, lambda: config.backend.read(generation_key, key)
            )
            if entry is FAILED or entry[0] != generation:
                return None
            if entry[1] is not None:
                payload: bytes = entry[1]
                return payload
        return None


class _Lease:
    """The fill lease of one miss, if its query ran long enough to take one."""

    __slots__ = ("task", "token")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.token = ""
