"""Engine construction that makes every backend safe for per-batch SAVEPOINTs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ._bulk import prepare_engine
from ._bulk.sqlite import enable_savepoints
from ._dependencies import needs

if TYPE_CHECKING:
    from sqlalchemy import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["create_engine", "enable_sqlite_savepoints"]


def create_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """``create_async_engine`` plus what the database needs before baserepo can rely on it:
    on SQLite, SQLAlchemy's recipe for working SAVEPOINTs.

    Args:
        url: any SQLAlchemy async URL (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``,
            ``mysql+asyncmy://``...).
        **kwargs: passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Raises:
        MissingDependencyError: the URL's driver is not installed; the message names the
            extra that installs it (``pip install 'baserepo[postgres]'``).
    """
    return prepare_engine(async_engine(url, **kwargs))


def async_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """``create_async_engine``, with a missing driver reported as ``MissingDependencyError``."""
    parsed = make_url(url)
    with needs(parsed.drivername):
        return create_async_engine(parsed, **kwargs)


def enable_sqlite_savepoints(engine: AsyncEngine) -> AsyncEngine:
    """Apply SQLAlchemy's documented fix for SAVEPOINT on pysqlite/aiosqlite; idempotent.

    For an engine made with ``create_async_engine`` rather than :func:`create_engine`.
    """
    return enable_savepoints(engine)
