"""The raw operations a cache backend provides; policy (keys, TTLs, codecs, failing open,
stats) lives above it, in the per-model ``QueryCache`` and its parts.

Coherence rests on one integer per model, its *generation*: every entry is stored together
with the generation read before the query that produced it, a write bumps the generation
after its commit, and an entry is served only while its generation is current. ``fill`` is a
compare-and-set: it stores only if the generation has not moved since the reader read it, so
the stale-set race (reader reads the old row, writer commits and bumps, reader stores the old
row) is refused atomically, inside the backend.

A write also records an *intent* before its COMMIT (``begin_write``) and ends it after
(``end_write``): fills are refused while it stands, so a writer that dies between the two
leaves nothing stale to serve, and the first fill after the intent expired completes its
invalidation (``_intent_scripts`` states the invariants).

All keys one model uses share a Redis Cluster hash tag, so the generation, its entries and its
leases live in one slot: MGET and the compare-and-set scripts are single-slot operations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BackendView",
    "CacheBackend",
    "DescribableBackend",
    "Entry",
    "StoredKey",
    "warn_try_lock",
]

Entry = tuple[int, bytes | None]
"""(current generation of the model, stored payload or None). The payload is returned only
when it was stored under the current generation; an entry of an older generation reads as
None."""


@runtime_checkable
class CacheBackend(Protocol):
    """Byte-level operations every cache backend implements; each may raise on I/O trouble
    (the caller times it out, counts it as a miss and feeds the circuit breaker)."""

    async def read(self, generation_key: str, key: str) -> Entry:
        """Current generation and the entry at ``key`` if it was stored under it; one round trip."""
        ...

    async def read_many(
        self, generation_key: str, keys: Sequence[str]
    ) -> tuple[int, list[bytes | None]]:
        """As ``read`` for several keys of the same model; one round trip."""
        ...

    async def read_with_lease(
        self, generation_key: str, key: str, lease_key: str
    ) -> tuple[int, bytes | None, bool]:
        """As ``read``, and whether someone holds the fill lease ``lease_key``; one round
        trip (an MGET of three keys of one slot)."""
        ...

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
        """``fill`` (intents included), then ``release_lease(lease_key, token)``, atomically in
        one round trip."""
        ...

    async def fill(
        self, generation_key: str, key: str, generation: int, payload: bytes, ttl_seconds: float
    ) -> bool:
        """Store ``payload`` under ``key`` with a TTL only if the model's generation exists and
        still equals ``generation`` and no write intent stands (``begin_write``); atomic.
        Returns False (nothing stored) otherwise. A fill that finds only expired intents
        removes them and moves the generation (their writers died after their commits)."""
        ...

    async def bump(self, generation_key: str) -> int:
        """Move the model's generation on: to the larger of the next number and the clock
        (microseconds), so numbers never go back or repeat, even after the backend lost its
        data or restored an older copy of it. Returns the new value. A backend whose data can
        be restored (Redis) also reads a generation it cannot vouch for as missing (0), so
        the reader bumps before using the cache."""
        ...

    async def begin_write(self, generation_key: str, token: str, seconds: float) -> int:
        """Record a write intent ``token`` that stands ``seconds`` (by the backend's clock),
        drop expired intents, and ``bump``; atomic, one round trip. Returns the new
        generation. While any intent stands, live or expired, no fill is stored."""
        ...

    async def end_write(self, generation_key: str, token: str) -> int:
        """Remove the intent ``token`` (no other live one) and the expired intents, and
        ``bump``; atomic, one round trip. Returns the new generation."""
        ...

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every key matching a glob ``pattern``, on every node, without KEYS; returns
        how many were deleted. Never deletes a key that contains ``":~"`` (metadata)."""
        ...

    async def acquire_lease(self, key: str, token: str, ttl_seconds: float) -> bool:
        """SET key token NX with a TTL: True if this caller now holds the lease. Serves both
        the fill lease of a slow miss and the lock that elects one warmer per interval."""
        ...

    async def release_lease(self, key: str, token: str) -> None:
        """Delete the lease only if it still holds ``token``; atomic."""
        ...

    async def incr_usage(
        self,
        usage_key: str,
        specs_key: str,
        counts: dict[str, float],
        specs: dict[str, bytes],
        max_tracked: int,
    ) -> None:
        """Add ``counts`` to the members of the sorted set ``usage_key``, remember each query's
        ``specs`` (member -> serialised query) in the hash ``specs_key``, and trim both to the
        ``max_tracked`` highest-scored members; one round trip."""
        ...

    async def top_usage(
        self, usage_key: str, specs_key: str, limit: int, min_score: float
    ) -> list[tuple[str, float, bytes | None]]:
        """The ``limit`` highest-scored members with score >= ``min_score``, with their specs."""
        ...

    async def decay_usage(self, usage_key: str, factor: float) -> None:
        """Multiply every score by ``factor`` (0 < factor <= 1), so old popularity fades."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One stored key as ``describe`` sees it."""

    key: str
    size: int | None
    """Bytes the key takes in the backend (Redis: ``MEMORY USAGE``); None if unknown."""
    generation: int | None
    """The generation an entry was sealed under (``_envelope``); None for any other value."""
    ttl_seconds: float | None
    """Time left to live; None without a TTL."""


@dataclass(frozen=True, slots=True)
class BackendView:
    """What a backend holds for one model, raw: ``describe``'s answer (read, not judged)."""

    server: str
    """The run of the server holding the model's keys (Redis: ``run_id``; memory: "")."""
    generation: int | None
    """The stored generation, None if there is none."""
    moved_under: str | None
    """The server run the generation was last moved under, None if unrecorded."""
    intent_seconds_left: tuple[float, ...]
    """For each write intent in the set: seconds until its deadline (<= 0: expired)."""
    keys: tuple[StoredKey, ...]
    """Every key matching the pattern, metadata included."""


@runtime_checkable
class DescribableBackend(Protocol):
    """A backend that can show an operator what it holds for a model (``baserepo cache
    stats``); both built-in backends are. Not part of ``CacheBackend``: reading every key of
    a model is an operator's occasional look, never on a request's path."""

    async def describe(self, generation_key: str, pattern: str) -> BackendView:
        """The generation of ``generation_key`` (with its server run and write intents) and
        every key matching the glob ``pattern``, read without changing anything (no TTL
        touched, no expired intent removed). SCAN, never KEYS."""
        ...


def warn_try_lock() -> None:
    """``try_lock`` was ``acquire_lease`` under a second name; the built-in backends keep it
    one release as a deprecated alias."""
    warnings.warn(
        "CacheBackend.try_lock() is deprecated; use acquire_lease(), the same operation",
        DeprecationWarning,
        stacklevel=3,
    )
