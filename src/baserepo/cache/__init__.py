"""The query cache: configuration, backends and statistics.

``CacheConfig(redis_client=...)`` selects Redis (standalone or Cluster); without a client the
in-process backend serves one process. See ``docs/cache.md`` for the key scheme, when
invalidation happens and what is guaranteed.
"""

from ._guard import BreakerState
from ._memory import MemoryBackend
from ._protocol import CacheBackend
from ._warming import CacheWarmer
from .config import CacheConfig, CacheStats, CacheWarmingConfig, QueryUsage, WarmReport

__all__ = [
    "BreakerState",
    "CacheBackend",
    "CacheConfig",
    "CacheStats",
    "CacheWarmer",
    "CacheWarmingConfig",
    "MemoryBackend",
    "QueryUsage",
    "WarmReport",
]
