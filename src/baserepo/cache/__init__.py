"""The query cache: configuration, backends and statistics.

``CacheConfig(redis_client=...)`` selects Redis (standalone or Cluster); without a client the
in-process backend serves one process. See ``docs/cache.md`` for the key scheme, when
invalidation happens and what is guaranteed.

Inside, one responsibility per module, imported in this order (none imports a later one):
``_envelope`` (the stored form of an entry), ``_protocol`` (the backend operations),
``_memory`` / ``_identity`` / ``_redis`` (the backends; ``_identity``: which server
the Redis backend talks to), ``_keys``, ``_codec``, ``_shapes`` (result shapes),
``_guard`` (failing open, the circuit breaker), ``_usage`` (popular-query tracking),
``_stats``, ``_runtime`` (the running state of one config), ``config`` (settings and the
user guide's methods, docs/guide.md), ``_invalidation`` (a model's generation), ``_reads``
(serve and fill), ``_query_cache`` (one model's cache), ``_warming``, ``_admin`` (an operator's
look and invalidation, for ``baserepo cache``).
"""

from ._admin import (
    CacheInspection,
    InvalidationReport,
    PopularQuery,
    inspect_cache,
    invalidate_model,
)
from ._guard import BreakerState
from ._memory import MemoryBackend
from ._protocol import CacheBackend
from ._warming import CacheWarmer, WarmObserver, WarmOutcome, warm_model
from .config import CacheConfig, CacheStats, CacheWarmingConfig, QueryUsage, WarmReport

__all__ = [
    "BreakerState",
    "CacheBackend",
    "CacheConfig",
    "CacheInspection",
    "CacheStats",
    "CacheWarmer",
    "CacheWarmingConfig",
    "InvalidationReport",
    "MemoryBackend",
    "PopularQuery",
    "QueryUsage",
    "WarmObserver",
    "WarmOutcome",
    "WarmReport",
    "inspect_cache",
    "invalidate_model",
    "warm_model",
]
