"""MariaDB/MySQL: ``INSERT IGNORE ... RETURNING`` (MariaDB 10.5+); changes by locked keys.

``ON DUPLICATE KEY UPDATE id = id`` would return the existing rows as well, so skipped
records could not be told apart; ``INSERT IGNORE`` returns only the rows it inserted. IGNORE
also downgrades other errors to warnings, which is why records are validated (NOT NULL,
type, string length) before they reach this statement.

Each skipped row is a server warning, and asyncmy logs every one of them (``SHOW WARNINGS``,
then one ``logging`` WARNING per row on its ``asyncmy`` logger, which reaches stderr when the
application configured no logging). The skips are already reported one by one in the result,
so the driver's records of our own statements are held back and summarised once per batch on
``baserepo.bulk``: at INFO when every warning is a duplicate key, at WARNING otherwise.

bulk_update/bulk_delete: MySQL/MariaDB take no ``LIMIT`` in an ``IN (SELECT ...)`` subquery
and have no ``UPDATE ... RETURNING``, so a batch's keys are read with a locking read and then
changed by key (``dialect.keyed_change``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ColumnElement, Insert, Table, insert
from sqlalchemy.ext.compiler import compiles

from .._lookups import CaseSensitive
from .._telemetry import event
from ._batching import DEFAULT_BATCH_SIZE
from ._insert import ExecutemanyInsert
from ._upsert import Outcome, UpsertPlan, read_then_write
from .dialect import ChangeBatch, ChangeTarget, keyed_change
from .rows import case_rows_per_update, case_update_rows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine as AsyncEngine
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.compiler import SQLCompiler

    from .._model import ModelInfo
    from ._insert import Row
    from ._key_pool import KeyPool

__all__ = ["MysqlDialect"]

DRIVER_LOGGER = "asyncmy"
"""Where asyncmy logs the server's warnings (``cursors.py``: ``logging.getLogger(__package__)``)."""

logger = logging.getLogger("baserepo.bulk")

# The warnings of the statement running in this task (a context variable: other tasks on
# other connections keep their driver logging untouched).
_held: ContextVar[list[str] | None] = ContextVar("baserepo_mysql_warnings", default=None)


class _HoldOurWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        held = _held.get()
        if held is None or record.levelno != logging.WARNING:
            return True
        held.append(record.getMessage())
        return False


_FILTER = _HoldOurWarnings()


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return insert(table).prefix_with("IGNORE", dialect="mysql")


class MysqlDialect:
    """SQLAlchemy's executemany, with the driver's per-row warnings summarised per batch."""

    names: ClassVar[tuple[str, ...]] = ("mysql", "mariadb")
    driver: ClassVar[str | None] = None
    requirement: ClassVar[str] = "MariaDB 10.5+"

    @staticmethod
    def prepare_engine(engine: AsyncEngine) -> None:
        """Nothing: SAVEPOINT works as the driver comes."""

    def __init__(self, dialect: Dialect) -> None:
        self.db_system = "mariadb" if getattr(dialect, "is_mariadb", False) else "mysql"
        self.max_parameters: int = dialect.insertmanyvalues_max_parameters
        self.default_batch_size = DEFAULT_BATCH_SIZE
        # MariaDB hands out autoincrement keys in row order within one multi-row INSERT.
        self._executemany = ExecutemanyInsert(
            self.max_parameters, _insert_ignoring_conflicts, keys_follow_row_order=True
        )

    def rows_per_statement(self, info: ModelInfo) -> int:
        return self._executemany.rows_per_statement(info)

    def change_batch_size(self, batch_size: int, *, deleting: bool) -> int:
        # The keys travel as bind parameters of the change: clamp to the dialect's limit.
        return min(batch_size, self.max_parameters)

    def tries_whole_call(self, *, deleting: bool) -> bool:
        return False

    async def change(
        self,
        session: AsyncSession,
        target: ChangeTarget,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        whole: bool,
    ) -> ChangeBatch:
        return await keyed_change(session, target, condition, values, size, last)

    async def upsert(
        self, session: AsyncSession, info: ModelInfo, rows: Sequence[Row], plan: UpsertPlan
    ) -> list[tuple[Any, Outcome]]:
        return await read_then_write(self, session, info, rows, plan)

    async def insert(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: Sequence[Row],
        *,
        ignore_conflicts: bool,
        key_pool: KeyPool | None = None,
    ) -> list[Any | None]:
        # asyncmy logs every warning of the server on its own logger, one line each (a line
        # per skipped row under INSERT IGNORE): they are held and summarised per batch here.
        driver_logger = logging.getLogger(DRIVER_LOGGER)
        if _FILTER not in driver_logger.filters:
            driver_logger.addFilter(_FILTER)
        held: list[str] = []
        token = _held.set(held)
        try:
            ids = await self._executemany.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        finally:
            _held.reset(token)
        if held:
            event("mariadb.warnings", {"baserepo.warnings": len(held)})
            if ignore_conflicts:
                _summarise(info.table.name, held, skipped=ids.count(None), total=len(rows))
            else:
                logger.warning(
                    "INSERT into %s: the server warned %d times for %d rows: %s",
                    info.table.name,
                    len(held),
                    len(rows),
                    _distinct(held),
                )
        return ids

    def rows_per_update(
        self, target: ChangeTarget, columns: Sequence[str], batch_size: int | None
    ) -> int:
        return case_rows_per_update(self.max_parameters, columns, batch_size)

    async def update_rows(
        self,
        session: AsyncSession,
        target: ChangeTarget,
        condition: ColumnElement[bool],
        keys: list[Any],
        columns: Mapping[str, list[Any]],
        common: Mapping[str, Any],
    ) -> list[Any]:
        # No RETURNING on UPDATE: the keys are read and locked first.
        return await case_update_rows(
            session, target, condition, keys, columns, common, returning=False
        )


_AT_ROW = re.compile(r" at row \d+$")


def _distinct(warnings: list[str], shown: int = 3) -> str:
    """The distinct warnings (their "at row N" left out) with how many rows each concerns."""
    counts = Counter(_AT_ROW.sub("", warning) for warning in warnings)
    parts = [f"{text} ({count} rows)" for text, count in counts.most_common(shown)]
    if len(counts) > shown:
        parts.append(f"and {len(counts) - shown} other warnings")
    return "; ".join(parts)


def _summarise(table: str, warnings: list[str], *, skipped: int, total: int) -> None:
    others = [w for w in warnings if not w.startswith("Duplicate entry")]
    if others:
        shown = "; ".join(dict.fromkeys(others[:5]))
        logger.warning(
            "INSERT IGNORE into %s: %d of %d rows skipped, and the server warned of more than "
            "duplicates (%d warnings): %s",
            table,
            skipped,
            total,
            len(warnings),
            shown,
        )
        return
    logger.info(
        "INSERT IGNORE into %s: %d of %d rows skipped as duplicates, each reported in the "
        "result (%d driver warnings held back, first: %s)",
        table,
        skipped,
        total,
        len(warnings),
        warnings[0],
    )


# Comparisons follow the column collation, case-insensitive by default: the case-sensitive
# lookups compare bytes. A "mariadb://" URL gives a dialect named "mariadb", and @compiles
# dispatches on the exact name: without it BINARY was silently dropped there.
@compiles(CaseSensitive, "mysql", "mariadb")
def _compile_binary(element: CaseSensitive, compiler: SQLCompiler, **kw: Any) -> str:
    return f"BINARY {compiler.process(element.clauses, **kw)}"
