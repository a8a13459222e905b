"""The bulk engine: a batching loop (``engine``) plus one insert strategy per dialect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import mysql, postgresql, sqlite
from ._insert import InsertStrategy
from .engine import BulkEngine

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Dialect

__all__ = ["BulkEngine", "InsertStrategy", "insert_strategy_for"]

_STRATEGIES: dict[str, Callable[[], InsertStrategy]] = {
    "postgresql": postgresql.insert_strategy,
    "sqlite": sqlite.insert_strategy,
    "mysql": mysql.insert_strategy,
    "mariadb": mysql.insert_strategy,
}


def insert_strategy_for(dialect: Dialect) -> InsertStrategy:
    if not dialect.insert_returning:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(
            f"{dialect.name} {dialect.server_version_info} cannot return ids from INSERT; "
            "baserepo needs PostgreSQL, SQLite 3.35+ or MariaDB 10.5+"
        )
    try:
        return _STRATEGIES[dialect.name]()
    except KeyError:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"no bulk strategy for the {dialect.name} dialect") from None
