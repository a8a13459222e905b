"""Create and drop the database a URL names: for test suites, benchmarks and the demo, never
used by the library itself. Public as :mod:`baserepo.testing`'s ``ensure_database`` and
``drop_database``.

SQLAlchemy only, through an AUTOCOMMIT engine on the server's maintenance database, so it works
with whichever async driver the URL names. A SQLite file is created on first connect and left
alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import make_url, text

from ._engine import async_engine

if TYPE_CHECKING:
    from sqlalchemy import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["drop_database", "ensure_database"]

# Per server: the database to connect to while the named one may not exist, and how to ask
# whether it does. MySQL and MariaDB have no maintenance database: connect without one.
_MAINTENANCE_DATABASE = {"postgresql": "postgres"}
_EXISTS_SQL = {
    "postgresql": "SELECT 1 FROM pg_database WHERE datname = :name",
    "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name",
}


async def ensure_database(url: str | URL) -> None:
    """Create the database ``url`` names on its PostgreSQL or MariaDB/MySQL server if it does
    not exist; do nothing for SQLite or a URL without a database."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" or not parsed.database:
        return
    admin = _admin_engine(parsed)
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                text(_EXISTS_SQL.get(backend, _EXISTS_SQL["mysql"])), {"name": parsed.database}
            )
            if not exists:
                quoted = admin.dialect.identifier_preparer.quote(parsed.database)
                await conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await admin.dispose()


async def drop_database(url: str | URL) -> None:
    """Drop the database ``url`` names, if it exists; on PostgreSQL even while other sessions
    are connected to it (``WITH (FORCE)``, PostgreSQL 13+). Nothing for SQLite."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" or not parsed.database:
        return
    admin = _admin_engine(parsed)
    quoted = admin.dialect.identifier_preparer.quote(parsed.database)
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
    finally:
        await admin.dispose()


def _admin_engine(url: URL) -> AsyncEngine:
    maintenance = _MAINTENANCE_DATABASE.get(url.get_backend_name(), "")
    return async_engine(url.set(database=maintenance), isolation_level="AUTOCOMMIT")
