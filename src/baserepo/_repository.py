"""BaseRepository: one async repository per model, composing lookups, the bulk engine,
transactions and events."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ._arguments import check_batch_size, check_records, check_whole_table
from ._bulk import BulkChanges, BulkDialect, BulkEngine, bulk_dialect_for
from ._bulk._batching import DEFAULT_BATCH_SIZE
from ._bulk._retry import DEFAULT_RETRY, RetryPolicy
from ._effects import WriteEffects
from ._events import EventBus, EventType, default_event_bus
from ._identity import (
    adopt,
    has_pending_changes,
    with_onupdate_values,
)
from ._lookups import build_filters, typed_filters
from ._model import ModelInfo, model_info
from ._ordering import OrderBy, order_clauses
from ._orm_writes import track_writes
from ._records import RecordPreparer
from ._replicas import Reader, ReadReplica
from ._schemas import declared_schemas
from ._soft_delete import SoftDelete
from ._statements import TranslatedUnit, read_one
from .cache._query_cache import QueryCache, query_cache_for
from .cache._shapes import COUNT, ONE, ROWS, Shape
from .cache._stats import CacheStats, WarmReport
from .cache._warming import replay_queries_with, warm

if typing.TYPE_CHECKING:
    import builtins

    from ._bulk.tally import ProgressCallback
    from ._results import BulkOperationResult
    from .cache.config import CacheConfig, ModelCacheConfig

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHANGE_BATCH_SIZE", "BaseRepository"]

ModelT = TypeVar("ModelT")
T = TypeVar("T")
CreateSchemaT = TypeVar("CreateSchemaT")
UpdateSchemaT = TypeVar("UpdateSchemaT")

DEFAULT_CHANGE_BATCH_SIZE = 50_000
"""Rows per bulk_update/bulk_delete batch when the caller gives none. Each batch pays a commit
and a search for its own rows: for a cheap change (a hard delete of 30,000 of 100,000 rows)
that left 0.68x the single statement at 10,000 and 0.76x at 20,000, 1.07x at 50,000
(bench/change_batch_size.py). PostgreSQL keeps row locks in the rows, so a larger batch only
holds them longer (~0.1 s for 50,000 deletes, ~0.35 s for updates); docs/performance.md."""

Filters = Mapping[str, Any]
Records = Iterable[Any] | AsyncIterable[Any]


class BaseRepository(Generic[ModelT, CreateSchemaT, UpdateSchemaT]):
    """Async CRUD, filtered reads and bulk writes for one SQLAlchemy model.

    Args:
        model: a mapped class with a single-column primary key.
        session: the ``AsyncSession`` to work in. If the caller began a transaction on it
            (``async with session.begin():``), the repository never commits: each write or
            batch runs in a SAVEPOINT and everything ends with the caller's transaction.
            Otherwise each write (each batch, for bulk calls) is committed before it returns.
        cache_config: query cache settings (:class:`baserepo.CacheConfig`).
        event_bus: where events go after commit; defaults to ``baserepo.default_event_bus``.
        soft_delete_column: the column whose presence turns soft delete on.
        create_schema / update_schema: pydantic models to validate mappings with. When
            omitted, taken from class attributes of the same names, else from the type
            arguments, in the alias form ``BaseRepository[User, UserCreate, UserUpdate](...)``
            as in the subclass form ``class UserRepository(BaseRepository[User, ...])``.
        retry: how a bulk batch that failed transiently (deadlock, serialization failure,
            busy database) is run again before it is reported; :class:`baserepo.RetryPolicy`
            (default: 6 tries, jittered waits of at most 1.55 s in all). Inside your own
            transaction such a failure raises :class:`baserepo.TransactionRetryError` instead.
        read_replica: a streaming replica (its ``AsyncEngine``, or an ``async_sessionmaker``
            bound to it; PostgreSQL only) for reads. A cache fill uses it only once it has
            replayed every write the model's generation covers; a session that wrote reads
            the primary from then on. docs/deployment.md, "PostgreSQL read replicas".

    Example::

        repo = BaseRepository[User, UserCreate, UserUpdate](User, session)
        result = await repo.bulk_create([{"name": "Ada", "email": "ada@example.com"}])
        active = await repo.list(is_active=True, email__iendswith="@example.com", limit=20)
    """

    create_schema: typing.ClassVar[type[Any] | None] = None
    """Set on a subclass to validate creates with this pydantic model."""
    update_schema: typing.ClassVar[type[Any] | None] = None
    """Set on a subclass to validate updates with this pydantic model."""

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
    ) -> None:
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a baserepo.RetryPolicy, got {type(retry).__name__}")
        self.model = model
        self._retry = retry
        self.session = session
        self.event_bus = event_bus if event_bus is not None else default_event_bus
        self._info: ModelInfo = model_info(model)
        self._soft = SoftDelete(self._info, soft_delete_column)
        self._schemas = (create_schema, update_schema)
        self._preparer_cache: RecordPreparer | None = None
        self._soft_delete_column = soft_delete_column
        self._shared_cache_config = cache_config
        # The guide reads repo._cache_config.should_warm_cache() / get_popular_queries():
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
            create_schema, update_schema = declared_schemas(self, BaseRepository, self._schemas)
            self._preparer_cache = RecordPreparer(
                self._info, create_schema=create_schema, update_schema=update_schema
            )
        return self._preparer_cache

    # -- reads ---------------------------------------------------------------------------

    async def get(self, id: Any, *, include_deleted: bool = False) -> ModelT | None:
        """The row with primary key ``id``, or None (also when it is soft-deleted)."""

        async def load() -> ModelT | None:
            query = select(self.model).where(self._pk == id)
            found: ModelT | None = await self._reads.one(
                self._soft.hide(query, {}, include_deleted)
            )
            return found

        spec = {"id": id, "include_deleted": include_deleted}
        return await self._through_cache("get", spec, load, ONE)

    async def get_many(
        self, ids: Iterable[Any], *, include_deleted: bool = False
    ) -> builtins.list[ModelT]:
        """Rows for ``ids`` in the order given; repeated and missing ids are left out."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        async def load() -> builtins.list[ModelT]:
            query = self._soft.hide(
                select(self.model).where(self._pk.in_(wanted)), {}, include_deleted
            )
            rows = await self._reads.all(query)
            found = {getattr(row, self._info.pk_attr): row for row in rows}
            return [found[i] for i in wanted if i in found]

        spec = {"ids": wanted, "include_deleted": include_deleted}
        return await self._through_cache("get_many", spec, load, ROWS)

    async def list(
        self,
        filters: Filters | None = None,
        /,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order_by: OrderBy | None = None,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> builtins.list[ModelT]:
        """Rows matching ``field__lookup=value`` filters, ordered (primary key last), paged."""
        # Checked and converted before any cache lookup: age="42" and age=42 are one entry.
        merged = typed_filters(self._info, _merge(filters, filter_kwargs))
        condition = build_filters(self._info, merged, typed=True)
        ordering = order_clauses(self._info, order_by)

        async def load() -> builtins.list[ModelT]:
            query = self._soft.hide(select(self.model).where(condition), merged, include_deleted)
            query = query.order_by(*ordering)
            if limit is not None:
                query = query.limit(limit)
            if offset:
                query = query.offset(offset)
            return await self._reads.all(query)

        spec = {
            "filters": merged,
            "limit": limit,
            "offset": offset,
            "order_by": [order_by] if isinstance(order_by, str) else order_by,
            "include_deleted": include_deleted,
        }
        return await self._through_cache("list", spec, load, ROWS)

    async def count(
        self,
        filters: Filters | None = None,
        /,
        *,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> int:
        """How many rows match the filters."""
        merged = typed_filters(self._info, _merge(filters, filter_kwargs))
        condition = build_filters(self._info, merged, typed=True)

        async def load() -> int:
            query = select(func.count()).select_from(self._info.table).where(condition)
            query = self._soft.hide(query, merged, include_deleted)
            return int(await self._reads.one(query) or 0)

        spec = {"filters": merged, "include_deleted": include_deleted}
        return await self._through_cache("count", spec, load, COUNT)

    async def exists(
        self,
        filters: Filters | None = None,
        /,
        *,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> bool:
        merged = _merge(filters, filter_kwargs)
        query = select(self._pk).where(self._where(merged))
        query = self._soft.hide(query, merged, include_deleted).limit(1)
        return await self._reads.one(query) is not None

    # -- single-row writes ---------------------------------------------------------------

    async def create(self, data: CreateSchemaT | Mapping[str, Any]) -> ModelT:
        """Insert one row and return it; raises RecordValidationError or IntegrityConflictError."""
        values = self._preparer.for_create(data)
        instance = self.model(**values)
        async with TranslatedUnit(self.session):
            self.session.add(instance)
            await self.session.flush()
            new_id = getattr(instance, self._info.pk_attr)
            self._effects.wrote(EventType.CREATED, [new_id], [values])
        return await self._fresh(instance)

    async def update(self, id: Any, data: UpdateSchemaT | Mapping[str, Any]) -> ModelT | None:
        """Apply ``data`` to the row ``id``; None when there is no such (visible) row."""
        values = self._preparer.for_update(data)
        async with TranslatedUnit(self.session):
            instance = await read_one(
                self.session, self._soft.hide(select(self.model).where(self._pk == id), {}, False)
            )
            if instance is None:
                return None
            for attr, value in values.items():
                setattr(instance, attr, value)
            await self.session.flush()
            self._effects.wrote(EventType.UPDATED, [id], [values])
        return await self._fresh(instance)

    async def delete(self, id: Any, soft_delete: bool | None = None) -> bool:
        """Delete the row ``id``: soft (stamp ``deleted_at``) when the model supports it.

        ``soft_delete=None`` means soft when the model has the soft-delete column, hard
        otherwise; ``True`` on a model without it raises ConfigurationError.
        """
        soft = self._soft.resolve(soft_delete)
        statement: Any
        if soft:
            statement = (
                update(self.model)
                .where(self._pk == id, self._soft.alive())
                .values({self._soft.required_attr: self._soft.now()})
            )
        else:
            statement = delete(self.model).where(self._pk == id)
        async with TranslatedUnit(self.session):
            done = _rowcount(await self.session.execute(statement)) > 0
            if done:
                self._effects.wrote(EventType.SOFT_DELETED if soft else EventType.DELETED, [id], [])
        # ORM-enabled statements: SQLAlchemy itself brings the identity map in line
        # (synchronize_session="auto"), for delete() and restore() alike.
        return done

    async def restore(self, id: Any) -> ModelT | None:
        """Undo a soft delete; None when the row does not exist or is not deleted."""
        statement = (
            update(self.model)
            .where(self._pk == id, self._soft.deleted())
            .values({self._soft.required_attr: None})
        )
        async with TranslatedUnit(self.session):
            restored = _rowcount(await self.session.execute(statement)) > 0
            if restored:
                self._effects.wrote(EventType.RESTORED, [id], [])
        return await self.get(id) if restored else None

    # -- bulk writes ---------------------------------------------------------------------

    async def bulk_create(
        self,
        data_list: Records,
        batch_size: int | None = None,
        emit_events: bool = True,
        ignore_conflicts: bool = False,
        *,
        progress: ProgressCallback | None = None,
        isolate_errors: bool = False,
    ) -> BulkOperationResult:
        """Insert many records in atomic batches; every record is created or reported.

        Args:
            data_list: any iterable or async iterable of mappings, pydantic models,
                dataclasses or model instances; only one batch is held in memory.
            batch_size: records per batch; None: the dialect's default (10,000 on
                PostgreSQL and SQLite, ``DEFAULT_BATCH_SIZE`` = 2,000 on MariaDB), clamped
                to the dialect's bind-parameter limit where rows travel as parameters.
            emit_events: publish one ``created`` event per committed batch.
            ignore_conflicts: skip records that hit a unique constraint instead of failing
                their batch; each skip is reported (kind ``conflict``, message says "unique").
            progress: called with the number of input records handled so far.
            isolate_errors: when the database refuses a batch, write the batch's other
                records anyway (in one unit, each refused record set aside and reported
                with its reason) instead of rolling the whole batch back.

        Raises:
            BulkOperationError: the call stopped midway (the input or ``progress`` raised,
                the database went away); ``.result`` accounts for every record taken.
            DatabaseUnavailableError: the database was unreachable before anything was done.
            ConfigurationError: e.g. the session's connection is in AUTOCOMMIT mode.
            TypeError: ``data_list`` is one record (a mapping or a pydantic model) or no
                iterable at all, or ``batch_size`` is not an int.
        """
        check_records(data_list)
        check_batch_size(batch_size, optional=True)
        engine = await self._bulk_engine()
        return await engine.create(
            data_list,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            on_batch=self._effects.per_batch(EventType.CREATED, emit_events, with_rows=True),
            progress=progress,
            isolate_errors=isolate_errors,
        )

    async def bulk_update(
        self,
        filters: Filters,
        update_data: UpdateSchemaT | Mapping[str, Any],
        batch_size: int = DEFAULT_CHANGE_BATCH_SIZE,
        emit_events: bool = True,
        *,
        include_deleted: bool = False,
        all_rows: bool = False,
        progress: ProgressCallback | None = None,
    ) -> BulkOperationResult:
        """Apply ``update_data`` to every row matching ``filters``, in atomic batches of keys.

        Empty ``filters`` would reach every row: that raises ValueError unless the call says
        ``all_rows=True`` (with ``filters={}``). Filter values are checked against their
        columns first (InvalidFilterError), so a bad value never reaches the database.
        """
        check_batch_size(batch_size)
        values = self._preparer.to_columns(self._preparer.for_update(update_data))
        if not values:
            raise ValueError("update_data is empty: nothing to update")
        requested = values
        # The statement also sets the onupdate stamps, computed here so the session's objects
        # can be given them; events carry what the caller asked to change.
        values = with_onupdate_values(self._info, values)
        condition = self._condition(filters, include_deleted)
        check_whole_table("bulk_update", filters, all_rows)
        changes = BulkChanges(self.session, self._info, await self._bulk_dialect(), self._retry)
        return await changes.change_where(
            condition,
            values=values,
            batch_size=batch_size,
            on_batch=self._effects.per_batch(
                EventType.UPDATED, emit_events, with_rows=True, written=values, event_row=requested
            ),
            progress=progress,
        )

    async def bulk_delete(
        self,
        filters: Filters,
        soft_delete: bool | None = None,
        batch_size: int = DEFAULT_CHANGE_BATCH_SIZE,
        emit_events: bool = True,
        *,
        include_deleted: bool = False,
        all_rows: bool = False,
        progress: ProgressCallback | None = None,
    ) -> BulkOperationResult:
        """Delete every row matching ``filters``: soft by default where the model supports it.

        Empty ``filters`` would reach every row: that raises ValueError unless the call says
        ``all_rows=True`` (with ``filters={}``).
        """
        check_batch_size(batch_size)
        soft = self._soft.resolve(soft_delete)
        condition = self._condition(filters, include_deleted)
        check_whole_table("bulk_delete", filters, all_rows)
        values = None
        if soft:
            # Stamping an already-deleted row again would only move its deletion date.
            condition = and_(condition, self._soft.alive())
            values = with_onupdate_values(
                self._info, self._preparer.to_columns({self._soft.required_attr: self._soft.now()})
            )
        changes = BulkChanges(self.session, self._info, await self._bulk_dialect(), self._retry)
        return await changes.change_where(
            condition,
            values=values,
            batch_size=batch_size,
            on_batch=self._effects.per_batch(
                EventType.SOFT_DELETED if soft else EventType.DELETED,
                emit_events,
                with_rows=False,
                written=values,
                deletes=not soft,
            ),
            progress=progress,
            # A deleted row is gone, a soft-deleted one fails the `deleted_at IS NULL` above.
            stops_matching=True,
        )

    # -- cache ---------------------------------------------------------------------------

    async def warm_cache(self) -> WarmReport:
        """Run the popular queries of this model and store their results.

        Each query runs in a short session of its own on the same engine, so warming stores
        only committed data whatever the state of this repository's session.
        """
        if self._cache is None:
            return WarmReport(self._info.name, 0, 0, 0, 0.0, 0.0)
        return await warm(self._cache, self._replay)

    async def invalidate_cache(self, pattern: str = "*") -> int:
        """Delete this model's cached entries matching ``pattern`` (``"list:*"``, ``"get:*"``,
        ``"*"``); returns how many were deleted. Writes through the repository invalidate by
        themselves; this is for changes made behind its back."""
        if self._cache is None:
            return 0
        return await self._cache.generation.invalidate_pattern(pattern)

    def cache_stats(self) -> CacheStats | None:
        """Hits, misses, fills... of this model's cache, or None without a cache."""
        if self._shared_cache_config is None:
            return None
        return self._shared_cache_config.stats(self._info.name)

    async def _replay(self, operation: str, spec: dict[str, Any]) -> None:
        bind = self.session.bind
        if not isinstance(bind, AsyncEngine):
            await _run_query(self, operation, spec)
            return
        async with AsyncSession(bind, expire_on_commit=False) as session:
            replica = type(self)(
                self.model,
                session,
                self._shared_cache_config,
                event_bus=self.event_bus,
                soft_delete_column=self._soft_delete_column,
                read_replica=self._read_replica,
            )
            await _run_query(replica, operation, spec)

    # -- helpers -------------------------------------------------------------------------

    @property
    def _pk(self) -> ColumnElement[Any]:
        column: ColumnElement[Any] = getattr(self.model, self._info.pk_attr)
        return column

    def _where(self, filters: Filters) -> ColumnElement[bool]:
        return build_filters(self._info, filters)

    def _condition(self, filters: Filters, include_deleted: bool) -> ColumnElement[bool]:
        if not isinstance(filters, Mapping):
            raise TypeError(
                f"filters must be a mapping of field__lookup to value, got {type(filters).__name__}"
            )
        condition = self._where(filters)
        if self._soft.hides(filters, include_deleted):
            condition = and_(condition, self._soft.alive())
        return condition

    async def _bulk_engine(self) -> BulkEngine:
        dialect = await self._bulk_dialect()
        self._reads.wrote()  # COPY writes on the raw connection, past the session's events
        return BulkEngine(self.session, self._info, self._preparer, dialect, self._retry)

    async def _bulk_dialect(self) -> BulkDialect:
        dialect = self.session.sync_session.get_bind(mapper=sa_inspect(self.model)).dialect
        if dialect.server_version_info is None:
            # Some capabilities (MariaDB's RETURNING) are known only once connected.
            await self.session.connection()
        return bulk_dialect_for(dialect)

    async def _through_cache(
        self,
        operation: str,
        spec: dict[str, Any],
        load: Callable[[], Awaitable[T]],
        shape: Shape,
    ) -> T:
        cache = self._cache
        if cache is None:
            return await load()
        codec = cache.codec
        if codec is None:
            return await load()
        if has_pending_changes(self.session):
            # The query would flush them first and read them back: uncommitted rows, which
            # must neither be stored for others nor be answered by an entry that predates them.
            cache.counters.bypasses += 1
            return await load()
        prepare, decode = shape(codec, lambda rows: adopt(self.session, self._info, rows))
        load = self._reads.filling(load)
        return await cache.reads.fetch(self.session, operation, spec, load, prepare, decode)

    async def _fresh(self, instance: ModelT) -> ModelT:
        # A commit expires instances when the session has expire_on_commit=True; reload now
        # so callers never trigger lazy IO outside the greenlet.
        if sa_inspect(instance).expired:
            await self.session.refresh(instance)
        return instance


def _merge(filters: Filters | None, filter_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if filters is not None and not isinstance(filters, Mapping):
        raise TypeError(f"filters must be a mapping, got {type(filters).__name__}")
    return {**(filters or {}), **filter_kwargs}


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def _run_query(
    repository: BaseRepository[Any, Any, Any], operation: str, spec: dict[str, Any]
) -> None:
    include_deleted = bool(spec.get("include_deleted", False))
    if operation == "list":
        await repository.list(
            spec.get("filters") or {},
            limit=spec.get("limit"),
            offset=spec.get("offset"),
            order_by=spec.get("order_by"),
            include_deleted=include_deleted,
        )
    elif operation == "count":
        await repository.count(spec.get("filters") or {}, include_deleted=include_deleted)
    elif operation == "get":
        await repository.get(spec["id"], include_deleted=include_deleted)
    elif operation == "get_many":
        await repository.get_many(spec["ids"], include_deleted=include_deleted)
    else:
        raise ValueError(f"cannot replay a {operation!r} query")


async def _replay_for_warmer(
    model: type[Any],
    session: AsyncSession,
    cache_config: CacheConfig,
    operation: str,
    spec: dict[str, Any],
) -> None:
    await _run_query(BaseRepository(model, session, cache_config), operation, spec)


# CacheWarmer replays queries through a repository; the cache never imports this module.
replay_queries_with(_replay_for_warmer)
