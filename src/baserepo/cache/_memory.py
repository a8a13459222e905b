"""The in-process backend: no server, one process. The embedded default and the reference
semantics every other backend is tested against (tests/contract)."""

from __future__ import annotations

import fnmatch
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ._envelope import open_envelope, seal, sealed_generation
from ._protocol import BackendView, StoredKey, warn_try_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._protocol import Entry

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """A dict with per-key expiry and an LRU bound; every operation is atomic because it
    never awaits in the middle.

    Args:
        max_entries: least recently used entries are evicted beyond this many keys.
        clock: seconds, monotonic; injected by tests to drive expiry without sleeping.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._generations: dict[str, int] = {}
        # Write intents per generation key: token -> deadline (clock seconds).
        self._intents: dict[str, dict[str, float]] = {}
        self._scores: dict[str, dict[str, float]] = {}
        self._specs: dict[str, dict[str, bytes]] = {}
        self._max_entries = max_entries
        self._clock = clock

    def _get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires_at = item
        if expires_at is not None and self._clock() >= expires_at:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def _set(self, key: str, value: bytes, ttl_seconds: float | None) -> None:
        expires_at = None if ttl_seconds is None else self._clock() + ttl_seconds
        self._data[key] = (value, expires_at)
        self._data.move_to_end(key)
        while len(self._data) > self._max_entries:
            self._data.popitem(last=False)

    async def read(self, generation_key: str, key: str) -> Entry:
        generation = self._generations.get(generation_key, 0)
        return generation, open_envelope(self._get(key), generation)

    async def read_many(
        self, generation_key: str, keys: Sequence[str]
    ) -> tuple[int, list[bytes | None]]:
        generation = self._generations.get(generation_key, 0)
        return generation, [open_envelope(self._get(key), generation) for key in keys]

    async def fill(
        self, generation_key: str, key: str, generation: int, payload: bytes, ttl_seconds: float
    ) -> bool:
        # A model without a generation yet accepts no fill: generations are created by
        # bump() from the clock, so a reader's number from before a data loss never matches.
        if self._generations.get(generation_key) != generation:
            return False
        if not self._open_for_fills(generation_key):
            return False
        self._set(key, seal(generation, payload), ttl_seconds)
        return True

    async def read_with_lease(
        self, generation_key: str, key: str, lease_key: str
    ) -> tuple[int, bytes | None, bool]:
        generation, payload = await self.read(generation_key, key)
        return generation, payload, self._get(lease_key) is not None

    async def fill_and_release(
        self,
        generation_key: str,
        key: str,
        generation: int,
        payload: bytes,
        ttl_seconds: float,
        lease_key: str,
        token: str,
    ) -> bool:
        stored = await self.fill(generation_key, key, generation, payload, ttl_seconds)
        await self.release_lease(lease_key, token)
        return stored

    async def bump(self, generation_key: str) -> int:
        # As in Redis: the larger of the next number and the clock (microseconds), so a
        # generation never goes back or repeats, even for a backend made again from scratch.
        generation = self._generations[generation_key] = self._next_generation(generation_key)
        return generation

    def _next_generation(self, generation_key: str) -> int:
        return max(self._generations.get(generation_key, 0) + 1, time.time_ns() // 1000)

    async def begin_write(self, generation_key: str, token: str, seconds: float) -> int:
        self._expire_intents(generation_key)
        self._intents.setdefault(generation_key, {})[token] = self._clock() + seconds
        return await self.bump(generation_key)

    async def end_write(self, generation_key: str, token: str) -> int:
        intents = self._intents.get(generation_key, {})
        intents.pop(token, None)
        self._expire_intents(generation_key)
        return await self.bump(generation_key)

    def _open_for_fills(self, generation_key: str) -> bool:
        """No intent stands; expired ones are removed and complete their writers'
        invalidations (the generation moves), as in Redis (``_intent_scripts``)."""
        if not self._intents.get(generation_key):
            return True
        if self._expire_intents(generation_key) and generation_key in self._generations:
            self._generations[generation_key] = self._next_generation(generation_key)
        return False

    def _expire_intents(self, generation_key: str) -> int:
        intents = self._intents.get(generation_key)
        if intents is None:
            return 0
        now = self._clock()
        expired = [token for token, deadline in intents.items() if deadline <= now]
        for token in expired:
            del intents[token]
        if not intents:
            del self._intents[generation_key]
        return len(expired)

    async def delete_pattern(self, pattern: str) -> int:
        doomed = [k for k in self._data if fnmatch.fnmatchcase(k, pattern) and ":~" not in k]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    async def acquire_lease(self, key: str, token: str, ttl_seconds: float) -> bool:
        if self._get(key) is not None:
            return False
        self._set(key, token.encode(), ttl_seconds)
        return True

    async def release_lease(self, key: str, token: str) -> None:
        if self._get(key) == token.encode():
            del self._data[key]

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Deprecated: ``acquire_lease`` (a warm lock is a lease on one interval's warm)."""
        warn_try_lock()
        return await self.acquire_lease(key, token, ttl_seconds)

    async def incr_usage(
        self,
        usage_key: str,
        specs_key: str,
        counts: dict[str, float],
        specs: dict[str, bytes],
        max_tracked: int,
    ) -> None:
        scores = self._scores.setdefault(usage_key, {})
        known = self._specs.setdefault(specs_key, {})
        for member, count in counts.items():
            scores[member] = scores.get(member, 0.0) + count
        known.update(specs)
        if len(scores) > max_tracked:
            keep = sorted(scores, key=lambda m: (-scores[m], m))[:max_tracked]
            kept = set(keep)
            for member in [m for m in scores if m not in kept]:
                del scores[member]
                known.pop(member, None)

    async def top_usage(
        self, usage_key: str, specs_key: str, limit: int, min_score: float
    ) -> list[tuple[str, float, bytes | None]]:
        scores = self._scores.get(usage_key, {})
        known = self._specs.get(specs_key, {})
        ranked = sorted(
            ((m, s) for m, s in scores.items() if s >= min_score), key=lambda i: (-i[1], i[0])
        )
        return [(member, score, known.get(member)) for member, score in ranked[:limit]]

    async def decay_usage(self, usage_key: str, factor: float) -> None:
        scores = self._scores.get(usage_key, {})
        for member in scores:
            scores[member] *= factor

    async def describe(self, generation_key: str, pattern: str) -> BackendView:
        now = self._clock()
        keys = tuple(
            StoredKey(
                key,
                len(value),
                sealed_generation(value),
                None if expires_at is None else expires_at - now,
            )
            for key, (value, expires_at) in self._data.items()
            if fnmatch.fnmatchcase(key, pattern) and (expires_at is None or expires_at > now)
        )
        generation = self._generations.get(generation_key)
        intents = self._intents.get(generation_key, {})
        return BackendView(
            server="",
            # One process, no restarts: a generation here is always under the current "run".
            generation=generation,
            moved_under=None if generation is None else "",
            intent_seconds_left=tuple(deadline - now for deadline in intents.values()),
            keys=keys,
        )

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
