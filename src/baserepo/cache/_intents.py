"""A write's cache invalidation in two parts around its COMMIT, so that a writer that dies
between its COMMIT and its bump leaves nothing stale to serve.

Invariant: before the outermost COMMIT of a transaction that wrote a cached model, the
model has a write intent (``CacheBackend.begin_write``: a token standing
``write_intent_seconds``, and a bump). While an intent stands no fill is stored, and entries
filled before it belong to an older generation. After the COMMIT the writer ends its intent
and bumps (``end_write``); a writer that died instead leaves its intent to expire, and the
first fill after that completes its invalidation (moves the generation) and is refused. So
no reader is served rows from before the write once it committed, dead writer or not, and
the cache is bypassed for at most ``write_intent_seconds`` (plus one refused fill).

Where the intent cannot be recorded (backend down, breaker open) the commit goes ahead: this
process stops trusting the model, as after a failed bump, and the end after the COMMIT still
runs (it removes the intent if the failed call landed after all, and bumps).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .._transactions import PreparedWork
from ._guard import FAILED

if TYPE_CHECKING:
    from ._invalidation import Generation
    from ._keys import KeySpace
    from ._runtime import CacheRuntime
    from .config import CacheConfig

__all__ = ["WriteIntent"]


class WriteIntent(PreparedWork):
    """The invalidation of one model's cache by one transaction (queued once per commit)."""

    __slots__ = ("_config", "_generation", "_keys", "_runtime", "_table", "_token")

    def __init__(
        self,
        config: CacheConfig,
        runtime: CacheRuntime,
        table: str,
        keys: KeySpace,
        generation: Generation,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._table = table
        self._keys = keys
        self._generation = generation
        self._token: str | None = None

    async def before_commit(self) -> None:
        config, runtime = self._config, self._runtime
        token = uuid.uuid4().hex
        generation_key = self._keys.generation
        seconds = config.write_intent_seconds
        # Kept even if the call fails: a call that timed out may still have landed, and its
        # intent must be ended after the COMMIT (ending an unknown token is a plain bump).
        self._token = token
        begun = await runtime.guard.call(
            self._table, lambda: config.backend.begin_write(generation_key, token, seconds)
        )
        if begun is FAILED:
            # Other processes may serve pre-write entries until our bump after the COMMIT
            # lands (until their TTL, if we die first: the limit of an outage); this one
            # bypasses the model until a bump of ours lands.
            runtime.distrust(self._table)

    async def __call__(self) -> None:
        """After the COMMIT: end the intent and bump (a plain bump if ``before_commit`` never
        ran: work queued after the outermost commit had started)."""
        token = self._token
        if token is None:
            await self._generation.invalidate()
            return
        runtime = self._runtime
        counters = runtime.stats.counters(self._table)
        counters.invalidations += 1
        if await self._end(token):
            # Every entry older than this bump is dead: the model can be trusted again.
            runtime.trust(self._table)
            return
        counters.invalidation_failures += 1
        # The intent still stands and completes itself when it expires; until a bump of
        # ours lands, this process does not trust the model.
        runtime.distrust(self._table)

    async def abandon(self) -> None:
        """The COMMIT did not succeed, or its outcome is unknown: end the intent, bumping as
        if it had (a bump too many costs a refill; one too few, a stale entry)."""
        token = self._token
        if token is not None:
            await self._end(token)

    async def _end(self, token: str) -> bool:
        config = self._config
        generation_key = self._keys.generation
        self._token = None
        ended = await self._runtime.guard.call(
            self._table, lambda: config.backend.end_write(generation_key, token)
        )
        # As for a plain bump (Generation.invalidate): through a failover, retried for up to
        # bump_retry_seconds before the write returns.
        return ended is not FAILED or await self._generation.retry(
            lambda: config.backend.end_write(generation_key, token)
        )
