"""What every part of a repository shares, and the helpers they use."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import ColumnElement, and_

from .._bulk._retry import DEFAULT_RETRY, RetryPolicy
from .._effects import WriteEffects
from .._events import EventBus, default_event_bus
from .._lookups import build_filters
from .._model import ModelInfo, model_info
from .._orm_writes import track_writes
from .._q import Q, as_filters
from .._records import RecordPreparer
from .._replicas import Reader, ReadReplica
from .._schemas import declared_schemas
from .._soft_delete import SoftDelete
from .._types import CreateSchemaT, IdT, KeyedModel, ModelT, UpdateSchemaT
from ..cache._query_cache import QueryCache, query_cache_for

if typing.TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ..cache.config import CacheConfig, ModelCacheConfig

__all__ = [
    "CreateSchemaT",
    "Filters",
    "IdT",
    "ModelT",
    "Records",
    "RepositoryState",
    "T",
    "UpdateSchemaT",
    "merge_filters",
    "rowcount",
]

T = TypeVar("T")

Filters = Mapping[str, Any] | Q
"""``field__lookup`` -> value, or a :class:`~baserepo.Q` combining them."""
Records = Iterable[Any] | AsyncIterable[Any]


class RepositoryState(Generic[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """What every part of a repository shares: the model, its session and cache, where
    events go, and the helpers that turn filters into conditions. ``BaseRepository``
    (``facade.py``) documents the arguments."""

    create_schema: typing.ClassVar[type[Any] | None] = None
    """Set on a subclass to validate creates with this pydantic model."""
    update_schema: typing.ClassVar[type[Any] | None] = None
    """Set on a subclass to validate updates with this pydantic model."""

    # For type checkers only: which overload matches says what IdT is (_types.py). The first
    # keeps the key Any for a legacy ``id = Column(...)``, which mypy 2 would otherwise match
    # with the Column itself as the key's type.
    @overload
    def __init__(
        self: RepositoryState[ModelT, CreateSchemaT, UpdateSchemaT, Any],
        model: type[KeyedModel[ModelT, ColumnElement[Any]]],
        session: AsyncSession,
        cache_config: CacheConfig | None = None,
        *,
        event_bus: EventBus | None = None,
        soft_delete_column: str = "deleted_at",
        create_schema: type[Any] | None = None,
        update_schema: type[Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        read_replica: ReadReplica | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        model: type[KeyedModel[ModelT, IdT]],
        session: AsyncSession,
        cache_config: CacheConfig | None = None,
        *,
        event_bus: EventBus | None = None,
        soft_delete_column: str = "deleted_at",
        create_schema: type[Any] | None = None,
        update_schema: type[Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        read_replica: ReadReplica | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        model: type[ModelT],
        session: AsyncSession,
        cache_config: CacheConfig | None = None,
        *,
        event_bus: EventBus | None = None,
        soft_delete_column: str = "deleted_at",
        create_schema: type[Any] | None = None,
        update_schema: type[Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        read_replica: ReadReplica | None = None,
    ) -> None: ...
    def __init__(
        self,
        model: type[Any],
        session: AsyncSession,
        cache_config: CacheConfig | None = None,
        *,
        event_bus: EventBus | None = None,
        soft_delete_column: str = "deleted_at",
        create_schema: type[Any] | None = None,
        update_schema: type[Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        read_replica: ReadReplica | None = None,
    ) -> None:
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a baserepo.RetryPolicy, got {type(retry).__name__}")
        self.model: type[ModelT] = model
        self._retry = retry
        self.session = session
        self.event_bus = event_bus if event_bus is not None else default_event_bus
        self._info: ModelInfo = model_info(model)
        self._soft = SoftDelete(self._info, soft_delete_column)
        self._schemas = (create_schema, update_schema)
        self._preparer_cache: RecordPreparer | None = None
        self._soft_delete_column = soft_delete_column
        self._shared_cache_config = cache_config
        # docs/guide.md reads repo._cache_config.should_warm_cache() / get_popular_queries():
        # bound to this model they answer for it, not for whichever model warmed last.
        self._cache_config: ModelCacheConfig | None = (
            cache_config.bound_to(self._info.name) if cache_config is not None else None
        )
        self._cache: QueryCache | None = (
            query_cache_for(cache_config, self._info) if cache_config is not None else None
        )
        self._effects = WriteEffects(session, self._info, self._cache, self.event_bus)
        self._read_replica = read_replica
        self._reads = Reader(session, self._info, read_replica)
        # Writes through the session itself (flushes, ORM-enabled DML) invalidate this cache.
        track_writes(session, model, self._cache)

    # -- introspection -------------------------------------------------------------------

    @property
    def supports_soft_delete(self) -> bool:
        return self._soft.supported

    @property
    def _preparer(self) -> RecordPreparer:
        if self._preparer_cache is None:
            # Lazy: the alias form records its type arguments after __init__ returns.
            create_schema, update_schema = declared_schemas(self, RepositoryState, self._schemas)
            self._preparer_cache = RecordPreparer(
                self._info, create_schema=create_schema, update_schema=update_schema
            )
        return self._preparer_cache

    # -- helpers -------------------------------------------------------------------------

    @property
    def _pk(self) -> ColumnElement[Any]:
        column: ColumnElement[Any] = getattr(self.model, self._info.pk_attr)
        return column

    def _where(self, filters: Filters) -> ColumnElement[bool]:
        return build_filters(self._info, as_filters(filters))

    def _condition(self, filters: Filters, include_deleted: bool) -> ColumnElement[bool]:
        filters = as_filters(filters)
        if not isinstance(filters, Mapping):
            raise TypeError(
                f"filters must be a mapping of field__lookup to value, got {type(filters).__name__}"
            )
        condition = self._where(filters)
        if self._soft.hides(filters, include_deleted):
            condition = and_(condition, self._soft.alive())
        return condition


def merge_filters(filters: Filters | None, filter_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if filters is not None and not isinstance(filters, Mapping | Q):
        raise TypeError(f"filters must be a mapping or a Q, got {type(filters).__name__}")
    return {**as_filters(filters if filters is not None else {}), **filter_kwargs}


def rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
