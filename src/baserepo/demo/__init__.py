"""``baserepo demo``: the user guide's bulk operations and query cache (docs/guide.md), run
for real.

An application of baserepo shipped with it, not a part of the library: it uses only the public
API (``baserepo``, ``baserepo.cache``, ``baserepo.testing``), and nothing in the library
imports it but the ``baserepo`` command. Run it with ``baserepo demo`` (or ``./dev demo``), or
from code::

    summary = asyncio.run(baserepo.demo.main("sqlite+aiosqlite:///demo.db", rows=1_000))

The modules, one step of the tour or one concern each:

- ``_tour``: :func:`main`, the steps in order, the summary;
- ``_create_steps``, ``_change_steps``, ``_failure_steps``, ``_cache_step``, ``_upsert_step``:
  the steps;
- ``_model``: the ``demo_users`` table; ``_data``: the records the steps write;
- ``_events``: the handler that counts events; ``_reporters``: plain or rich narration;
- ``_settings``: row counts, default URLs, the cache's key prefix.
"""

from ._data import GUIDE_USERS, population
from ._model import User, utcnow
from ._reporters import PlainReporter, Reporter, RichReporter, make_reporter
from ._settings import (
    CACHE_KEY_PREFIX,
    CACHED_READS,
    DEFAULT_ROWS,
    MIN_ROWS,
    POPULATION_LIMIT,
    default_database_url,
    default_redis_url,
    redact,
)
from ._tour import main

__all__ = [
    "CACHED_READS",
    "CACHE_KEY_PREFIX",
    "DEFAULT_ROWS",
    "GUIDE_USERS",
    "MIN_ROWS",
    "POPULATION_LIMIT",
    "PlainReporter",
    "Reporter",
    "RichReporter",
    "User",
    "default_database_url",
    "default_redis_url",
    "main",
    "make_reporter",
    "population",
    "redact",
    "utcnow",
]
