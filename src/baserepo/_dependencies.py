"""Which extra installs which optional library, and the error that says so when one is missing.

SQLAlchemy imports a URL's driver inside ``create_async_engine`` and lets the bare
``ModuleNotFoundError`` out of it; redis-py and rich are imported where they are first needed.
Each of those places turns the error into :class:`~baserepo.MissingDependencyError` here, so
the hint comes from one table, which ``tests/unit/test_dependencies.py`` checks against
``pyproject.toml``'s extras.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from .exceptions import MissingDependencyError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["EXTRAS", "REQUIRED", "missing_dependency", "needs"]

EXTRAS = {
    "asyncpg": "postgres",
    "psycopg": "psycopg",
    "asyncmy": "mysql",
    "redis": "redis",
    "rich": "cli",
}
"""Top-level module -> the baserepo extra whose requirements install it."""

REQUIRED = frozenset({"aiosqlite", "sqlalchemy", "greenlet", "pydantic", "orjson"})
"""Modules of baserepo's own requirements: missing only from a broken install."""


def missing_dependency(error: ModuleNotFoundError, needed_by: str) -> MissingDependencyError | None:
    """The error to raise instead of ``error`` when it is about a library of the tables above,
    else None (an unrelated import failure is left as it is)."""
    module = (error.name or "").partition(".")[0]
    if module in EXTRAS:
        extra: str | None = EXTRAS[module]
        hint = f"pip install 'baserepo[{extra}]'"
    elif module in REQUIRED:
        extra = None
        hint = f"baserepo requires it: reinstall baserepo, or pip install {module}"
    else:
        return None
    return MissingDependencyError(
        f"{needed_by} needs {module}, which is not installed: {hint}", name=module, extra=extra
    )


@contextmanager
def needs(needed_by: str) -> Iterator[None]:
    """Run the block; a missing library it imports becomes a ``MissingDependencyError`` that
    names ``needed_by`` (a driver name such as ``postgresql+asyncpg``, or ``a Redis cache``)."""
    try:
        yield
    except ModuleNotFoundError as error:
        missing = missing_dependency(error, needed_by)
        if missing is None:
            raise
        raise missing from error
