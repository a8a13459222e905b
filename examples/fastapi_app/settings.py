"""What the app reads from its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Settings"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./fastapi_app.db"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    """Any async SQLAlchemy URL (``APP_DATABASE_URL``)."""
    redis_url: str | None = None
    """The query cache's Redis (``APP_REDIS_URL``); None keeps the cache in the process,
    which is only right for a single worker process (docs/fastapi.md)."""
    cache_prefix: str = "fastapi_app"
    """Key prefix of this app's cache entries (``APP_CACHE_PREFIX``)."""
    create_tables: bool = True
    """Create missing tables at startup (``APP_CREATE_TABLES=0`` to skip; use migrations in
    production)."""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("APP_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url=os.environ.get("APP_REDIS_URL") or None,
            cache_prefix=os.environ.get("APP_CACHE_PREFIX", "fastapi_app"),
            create_tables=os.environ.get("APP_CREATE_TABLES", "1") not in ("0", "false", "no"),
        )
