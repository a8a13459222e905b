"""The demo's settings: how many rows, which database and Redis, what to call its cache keys."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from baserepo.cache.connect import redact

__all__ = [
    "CACHED_READS",
    "CACHE_KEY_PREFIX",
    "DEFAULT_ROWS",
    "MIN_ROWS",
    "POPULATION_LIMIT",
    "default_database_url",
    "default_redis_url",
    "redact",
]

DEFAULT_ROWS = 20_000
"""Rows written by the long, streamed ``bulk_create`` step."""
MIN_ROWS = 100
POPULATION_LIMIT = 1_000
"""The staff table and the individual-vs-bulk comparison use ``min(rows, 1000)`` rows."""
CACHE_KEY_PREFIX = "baserepo-demo"
"""Start of the cache's key prefix; each run adds its own suffix and deletes its keys."""
CACHED_READS = 5
"""Cached calls timed after the cold one (their median is the cached time)."""


def default_database_url() -> str:
    """``$BASEREPO_DATABASE_URL``, else a SQLite file in the system's temporary directory."""
    url = os.environ.get("BASEREPO_DATABASE_URL")
    if url:
        return url
    return f"sqlite+aiosqlite:///{Path(tempfile.gettempdir()) / 'baserepo_demo.sqlite3'}"


def default_redis_url() -> str | None:
    """``$BASEREPO_REDIS_URL``, else None: the demo's cache then runs in-process."""
    return os.environ.get("BASEREPO_REDIS_URL") or None
