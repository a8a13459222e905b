"""The bulk engine: the create and change loops, and one bulk dialect per database and driver.

``bulk_dialect_for`` picks the dialect class registered for the SQLAlchemy dialect's
(name, driver), else the one for its name and any driver, and makes one instance per
SQLAlchemy dialect object (one per engine): the instance reads the dialect's limits and
capabilities once and keeps what it learns about tables (plans, COPY targets) for that engine.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .changes import BulkChanges
from .creates import BulkEngine
from .dialect import BulkDialect
from .mysql import MysqlDialect
from .postgresql import PostgresqlDialect
from .postgresql_asyncpg import AsyncpgPostgresqlDialect
from .sqlite import SqliteDialect

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DIALECTS",
    "BulkChanges",
    "BulkDialect",
    "BulkEngine",
    "bulk_dialect_for",
    "prepare_engine",
]

DIALECTS: tuple[type[BulkDialect], ...] = (
    PostgresqlDialect,
    AsyncpgPostgresqlDialect,
    SqliteDialect,
    MysqlDialect,
)
"""Every bulk dialect; each says which SQLAlchemy dialect names (and driver) it serves."""

_REGISTRY: dict[tuple[str, str | None], type[BulkDialect]] = {
    (name, cls.driver): cls for cls in DIALECTS for name in cls.names
}

_INSTANCES: weakref.WeakKeyDictionary[Dialect, BulkDialect] = weakref.WeakKeyDictionary()


def bulk_dialect_for(dialect: Dialect) -> BulkDialect:
    """The bulk dialect of ``dialect``; call it once connected (some capabilities, such as
    MariaDB's RETURNING, are known only then)."""
    found = _INSTANCES.get(dialect)
    if found is not None:
        return found
    if not dialect.insert_returning:
        needed = ", ".join(dict.fromkeys(cls.requirement for cls in DIALECTS))
        raise ConfigurationError(
            f"{dialect.name} {dialect.server_version_info} cannot return ids from INSERT; "
            f"baserepo needs one of: {needed}"
        )
    cls = _class_for(dialect)
    if cls is None:
        raise ConfigurationError(f"no bulk dialect for {dialect.name}+{dialect.driver}")
    made = _INSTANCES[dialect] = cls(dialect)
    return made


def prepare_engine(engine: AsyncEngine) -> AsyncEngine:
    """Give a new engine what its database needs before baserepo can rely on it (SQLite: the
    SAVEPOINT recipe); capabilities are not known yet, only the dialect's name and driver."""
    cls = _class_for(engine.dialect)
    if cls is not None:
        cls.prepare_engine(engine)
    return engine


def _class_for(dialect: Dialect) -> type[BulkDialect] | None:
    return _REGISTRY.get((dialect.name, dialect.driver)) or _REGISTRY.get((dialect.name, None))
