"""BaseRepository: one async repository per model. Each group of methods lives in its
own module (reads, writes, bulk, upserts, caching) over the state they share (state.py)."""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import inspect as sa_inspect

from .._bulk import bulk_dialect_for
from .._telemetry import trace_calls
from ..cache._warming import replay_queries_with
from ..exceptions import ConfigurationError
from .caching import CacheMethods, run_query
from .get_or_create import GetOrCreateMethods
from .pages import PageMethods
from .row_updates import RowUpdateMethods
from .state import CreateSchemaT, IdT, ModelT, UpdateSchemaT
from .upserts import UpsertMethods
from .writes import WriteMethods

if typing.TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ..cache.config import CacheConfig


__all__ = ["BaseRepository"]


class BaseRepository(
    GetOrCreateMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
    WriteMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
    UpsertMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
    RowUpdateMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
    CacheMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
    PageMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT],
):
    """Async CRUD, filtered reads and bulk writes for one SQLAlchemy model.

    Generic in ``[Model, CreateSchema, UpdateSchema, Key]``; type checkers infer the model
    (and the key, for ``id: Mapped[...]``) from ``BaseRepository(User, session)``, and the
    rest have defaults (docs/typing.md).

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


async def _replay_for_warmer(
    model: type[Any],
    session: AsyncSession,
    cache_config: CacheConfig,
    operation: str,
    spec: dict[str, Any],
) -> None:
    await run_query(BaseRepository(model, session, cache_config), operation, spec)


# CacheWarmer replays queries through a repository; the cache never imports this module.
replay_queries_with(_replay_for_warmer)


def _db_system(repository: BaseRepository[Any, Any, Any]) -> str | None:
    """The ``db.system`` of the repository's database, as its bulk dialect names it; None
    before the engine's first connection (MariaDB is known from MySQL only then)."""
    dialect = repository.session.sync_session.get_bind(mapper=sa_inspect(repository.model)).dialect
    if dialect.server_version_info is None:
        return None
    try:
        return bulk_dialect_for(dialect).db_system
    except ConfigurationError:  # a database baserepo cannot bulk-write to: its own name
        return str(dialect.name)


# One span per call of every public method (docs/observability.md); nothing without OpenTelemetry.
trace_calls(BaseRepository, _db_system)
