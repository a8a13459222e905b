"""The cache of one model under one config, and the registry that makes it once.

Invariant: one ``QueryCache`` per (config, model), so every repository of the model shares
its single-flight, its generation bookkeeping and its counters. It owns the model's keys and
row codec and composes the parts that do the work: ``reads`` (``_reads``: serve and fill) and
``generation`` (``_invalidation``: invalidate), with a write's intent around its COMMIT
(``_intents``). Usage tracking and warming live in
``_usage`` and ``_warming``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._codec import RowCodec, UnsupportedColumn
from ._intents import WriteIntent
from ._invalidation import Generation
from ._keys import KeySpace
from ._reads import Reads

if TYPE_CHECKING:
    from .._model import ModelInfo
    from .config import CacheConfig

__all__ = ["QueryCache", "query_cache_for"]

logger = logging.getLogger("baserepo.cache")


def query_cache_for(config: CacheConfig, info: ModelInfo) -> QueryCache:
    """The cache of ``info``'s model under ``config``, made on first use."""
    cache = config.runtime.models.get(info.model)
    if not isinstance(cache, QueryCache):
        cache = QueryCache(config, info)
        config.runtime.models[info.model] = cache
    return cache


class QueryCache:
    """The cache of one model under one :class:`CacheConfig`."""

    def __init__(self, config: CacheConfig, info: ModelInfo) -> None:
        runtime = config.runtime
        self.config = config
        self.runtime = runtime
        self.info = info
        self.table = info.name
        self.counters = runtime.stats.counters(info.name)
        runtime.stats.name_model(info.name, info.model.__name__)
        self.codec: RowCodec | None
        try:
            self.codec = RowCodec(info)
        except UnsupportedColumn as unsupported:
            logger.warning(
                "%s is not cached: its rows cannot be restored exactly from the cache (%s)",
                info.model.__name__,
                unsupported,
            )
            self.codec = None
        self.keys = KeySpace(
            config.key_prefix, info.name, self.codec.layout if self.codec is not None else ""
        )
        self.generation = Generation(config, runtime, self.table, self.keys)
        self.reads = Reads(
            config, runtime, info.model, self.table, self.keys, self.generation, self.sync_usage
        )

    async def invalidate(self) -> None:
        """Make every entry of the model stale (after a write's commit)."""
        await self.generation.invalidate()

    def invalidation(self) -> WriteIntent:
        """A transaction's invalidation of this model, to queue with ``after_commit``: it
        records a write intent before the COMMIT, and ends it with a bump after."""
        return WriteIntent(self.config, self.runtime, self.table, self.keys, self.generation)

    async def settle(self) -> None:
        """Wait until every fill of this model started so far has reached the backend."""
        await self.reads.settle()

    async def sync_usage(self) -> None:
        """Send this model's pending use counts to the backend; read back the fleet's."""
        config = self.config
        await self.runtime.usage.sync(
            self.table, self.keys, config.backend, config.warming_config.max_tracked_queries
        )
