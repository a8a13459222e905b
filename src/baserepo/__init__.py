"""baserepo: one async repository per SQLAlchemy model, with fast, safe bulk operations."""

from ._bulk._retry import RetryPolicy
from ._engine import create_engine, enable_sqlite_savepoints
from ._events import EventBus, EventHandler, EventType, RepositoryEvent, default_event_bus
from ._keyset import Page
from ._lookups import LOOKUPS
from ._q import Q
from ._repository import DEFAULT_BATCH_SIZE, DEFAULT_CHANGE_BATCH_SIZE, BaseRepository
from ._results import BulkOperationResult, FailureKind, RecordFailure
from .cache import (
    BreakerState,
    CacheBackend,
    CacheConfig,
    CacheStats,
    CacheWarmer,
    CacheWarmingConfig,
    MemoryBackend,
    QueryUsage,
    WarmReport,
)
from .exceptions import (
    BaseRepoError,
    BulkOperationError,
    ConfigurationError,
    DatabaseUnavailableError,
    IntegrityConflictError,
    InvalidCursorError,
    InvalidFilterError,
    MissingDependencyError,
    MultipleRowsError,
    RecordValidationError,
    RepositoryDatabaseError,
    TransactionRetryError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHANGE_BATCH_SIZE",
    "LOOKUPS",
    "Q",
    "BaseRepoError",
    "BaseRepository",
    "BreakerState",
    "BulkOperationError",
    "BulkOperationResult",
    "CacheBackend",
    "CacheConfig",
    "CacheStats",
    "CacheWarmer",
    "CacheWarmingConfig",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "EventBus",
    "EventHandler",
    "EventType",
    "FailureKind",
    "IntegrityConflictError",
    "InvalidCursorError",
    "InvalidFilterError",
    "MemoryBackend",
    "MissingDependencyError",
    "MultipleRowsError",
    "Page",
    "QueryUsage",
    "RecordFailure",
    "RecordValidationError",
    "RepositoryDatabaseError",
    "RepositoryEvent",
    "RetryPolicy",
    "TransactionRetryError",
    "WarmReport",
    "__version__",
    "create_engine",
    "default_event_bus",
    "enable_sqlite_savepoints",
]
