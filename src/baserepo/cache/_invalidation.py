"""One model's generation: moved on by every write, created on the first read.

Invariant: an entry is served only under the generation current when it is read, and a write
moves the generation on after its commit, so after ``invalidate()`` returns no reader anywhere
is served what the model held before the write. When the move cannot reach the backend the
model is *untrusted* in this process (its reads bypass the cache and fill nothing) until a
later move succeeds.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ._guard import FAILED

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._keys import KeySpace
    from ._runtime import CacheRuntime
    from ._stats import Counters
    from .config import CacheConfig

__all__ = ["Generation"]

_RETRY_PAUSE_SECONDS = 0.05


class Generation:
    """The generation of one model under one config."""

    def __init__(
        self, config: CacheConfig, runtime: CacheRuntime, table: str, keys: KeySpace
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._table = table
        self._keys = keys
        self._counters: Counters = runtime.stats.counters(table)
        self._creation: asyncio.Future[Any] | None = None
        # Generations this process created (counted) and the last one: a reader whose "no
        # generation" answer predates a creation that has finished since uses that one.
        self.created = 0
        self._created_generation = 0

    async def invalidate(self) -> None:
        """Make every entry of the model stale; on failure, retry for up to
        ``bump_retry_seconds`` (through a failover), then stop trusting the cache."""
        self._counters.invalidations += 1
        config = self._config
        if await self.bump() is not FAILED or await self.retry(
            lambda: config.backend.bump(self._keys.generation)
        ):
            # Every entry older than this bump is now dead, including any a missed
            # invalidation should have removed: the model can be trusted again.
            self._runtime.trust(self._table)
            return
        self._counters.invalidation_failures += 1
        # Entries written before this write must not be served after it: bypass the model
        # until a later bump reaches the backend.
        self._runtime.distrust(self._table)

    async def retry(self, move: Callable[[], Awaitable[Any]]) -> bool:
        """Run ``move`` (a bump, or the end of a write intent, which bumps) again every
        ``_RETRY_PAUSE_SECONDS``, past an open breaker, until one lands or
        ``bump_retry_seconds`` (the config's; 0: no retry) have passed. The write has
        committed: while its bump has not landed, other processes that reach Redis (a
        promoted replica, or a breaker that closed sooner than ours) serve entries from
        before it. Counted in monotonic time, not ``config.clock`` (tests freeze that)."""
        config = self._config
        deadline = time.monotonic() + config.bump_retry_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(_RETRY_PAUSE_SECONDS)
            moved = await self._runtime.guard.call(self._table, move, force=True)
            if moved is not FAILED:
                return True
        return False

    async def invalidate_pattern(self, pattern: str) -> int:
        """Delete the entries matching ``pattern``, then move the generation."""
        config = self._config
        deleted = await self._runtime.guard.call(
            self._table, lambda: config.backend.delete_pattern(self._keys.pattern(pattern))
        )
        # Deleting is not enough: a reader that read the old rows before this call could
        # store them right after it. Moving the generation refuses that fill (and retires
        # the model's other entries too; they are refreshed on their next read). If the
        # bump fails, invalidate() stops trusting the cache; undeleted entries are then
        # only memory.
        await self.invalidate()
        return 0 if deleted is FAILED else int(deleted)

    async def make_safe(self) -> bool:
        """Bump, and trust the model again if that reached the backend."""
        if await self.bump() is FAILED:
            return False
        self._runtime.trust(self._table)
        return True

    async def bump(self) -> Any:
        """The new generation, or ``FAILED``."""
        config = self._config
        return await self._runtime.guard.call(
            self._table, lambda: config.backend.bump(self._keys.generation)
        )

    async def create(self, created_before_read: int) -> Any:
        """Bump once for every caller of this process that found no generation at the same
        time: a hundred concurrent first reads must share one generation (and so one
        single-flight query), not make a hundred. ``created_before_read``: ``self.created``
        when the caller sent its read."""
        if self.created != created_before_read:
            # This caller's read was sent before a creation of ours finished and its reply
            # (no generation) handled after. Bumping again would give it a generation of its
            # own (a second query, and the first caller's fill refused); the one just created
            # is as good, since it exists before this caller's query runs. If the backend
            # lost it meanwhile, the fill is refused, as for any reader.
            return self._created_generation
        pending = self._creation
        if pending is None:
            pending = self._creation = asyncio.ensure_future(self.bump())
            pending.add_done_callback(self._finished_creation)
        return await asyncio.shield(pending)

    def _finished_creation(self, done: asyncio.Future[Any]) -> None:
        self._creation = None
        if not done.cancelled() and done.exception() is None and done.result() is not FAILED:
            self._created_generation = int(done.result())
            self.created += 1
