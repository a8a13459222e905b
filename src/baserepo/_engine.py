"""Engine construction that makes every backend safe for per-batch SAVEPOINTs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "enable_sqlite_savepoints"]

_PATCHED = "_baserepo_sqlite_savepoints"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """``create_async_engine`` plus, on SQLite, SQLAlchemy's recipe for working SAVEPOINTs.

    Args:
        url: any SQLAlchemy async URL (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``,
            ``mysql+asyncmy://``...).
        **kwargs: passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.
    """
    engine = create_async_engine(url, **kwargs)
    if make_url(url).get_backend_name() == "sqlite":
        enable_sqlite_savepoints(engine)
    return engine


def enable_sqlite_savepoints(engine: AsyncEngine) -> AsyncEngine:
    """Apply SQLAlchemy's documented fix for SAVEPOINT on pysqlite/aiosqlite; idempotent.

    The driver's default delays BEGIN until the first DML statement, so a SAVEPOINT that
    opens a transaction starts one of its own and its RELEASE commits. The recipe turns the
    driver's handling off and emits BEGIN from SQLAlchemy's ``begin`` event instead.
    """
    sync_engine = engine.sync_engine
    if getattr(sync_engine, _PATCHED, False):
        return engine

    @event.listens_for(sync_engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _emit_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    setattr(sync_engine, _PATCHED, True)
    return engine
