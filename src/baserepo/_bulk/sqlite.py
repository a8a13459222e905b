"""SQLite: one multi-row ``INSERT ... VALUES (?, ...), (?, ...) RETURNING id`` per batch.

SQLAlchemy's own executemany path ("insertmanyvalues") spends most of its time per value:
building a parameter dict per row, then calling each column's bind processor value by value
(a ``DateTime`` is formatted through a ``%``-dict per value). This strategy builds the
statement text itself, once per (columns, row count), and the parameters column by column:
a column without a bind processor costs nothing, a ``DateTime`` in SQLAlchemy's default
SQLite storage format is converted by ``datetime.isoformat`` (the same text, checked), other
types go through SQLAlchemy's own bind processor. The statement runs with
``exec_driver_sql`` on the session's connection, so it is inside the transaction or
SAVEPOINT SQLAlchemy opened and driver errors arrive as SQLAlchemy exceptions.

Ids are matched to rows as in ``_insert``: SQLite hands out increasing rowids in row order
within one statement (what SQLAlchemy's ``sort_by_parameter_order`` relies on there too), and
with ``ON CONFLICT DO NOTHING`` the returned unique values are compared with the values that
were bound, so no result processing is needed. Tables this path cannot serve (a column type
with a SQL-level ``bind_expression``, a default that is a SQL expression or needs the
execution context) go through SQLAlchemy's executemany, as before.
"""

from __future__ import annotations

import datetime as dt
import weakref
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Sequence, Table, types
from sqlalchemy.dialects import sqlite

from ._batching import DEFAULT_BATCH_SIZE
from ._insert import ExecutemanyInsert, align_returned, group_by_keys, keys_are_known, match_keys

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Sequence as Seq

    from sqlalchemy import Column
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    from .._model import ModelInfo
    from ._insert import Row

__all__ = ["MAX_PARAMETERS", "SqliteInsert", "insert_strategy"]

# SQLITE_MAX_VARIABLE_NUMBER defaults to 32766 since SQLite 3.32.
MAX_PARAMETERS = 32_000

_DEFAULT_DATETIME_FORMAT = sqlite.DATETIME._storage_format
_ISO = methodcaller("isoformat", " ", "microseconds")
_TZINFO = attrgetter("tzinfo")
_BOOL_TYPES = frozenset({bool, type(None)})


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return sqlite.insert(table).on_conflict_do_nothing()


class _TablePlan:
    """What the fast path needs to know about one table, or why it cannot serve it."""

    def __init__(self, table: Table) -> None:
        self.usable = True
        self.defaults: dict[str, Callable[[int], list[Any]]] = {}
        for column in table.columns:
            if column.type._has_bind_expression:
                self.usable = False  # SQL around the parameter: only SQLAlchemy renders it
                return
            maker = _default_maker(column)
            if maker is False:
                self.usable = False
                return
            if maker is not None:
                self.defaults[column.key] = maker


def _default_maker(column: Column[Any]) -> Callable[[int], list[Any]] | bool | None:
    """Values for an omitted column's Python-side default; None: no default; False: can't."""
    default = column.default
    if default is None:
        return None
    if isinstance(default, Sequence) or not (default.is_scalar or default.is_callable):
        return False  # a SQL expression (default=func.now()) or a sequence
    arg: Any = default.arg  # type: ignore[attr-defined]
    if default.is_scalar:
        return lambda n: [arg] * n
    try:
        arg(None)
    except TypeError:
        return False  # a context-sensitive default: only SQLAlchemy can evaluate it
    # Called once per row, as SQLAlchemy does (uuid4 must differ row to row).
    return lambda n: [arg(None) for _ in range(n)]


class SqliteInsert:
    """The batch as one multi-row ``VALUES`` statement; executemany for tables it can't serve."""

    def __init__(self) -> None:
        self.max_parameters = MAX_PARAMETERS
        self.default_batch_size = DEFAULT_BATCH_SIZE
        self.limited_subquery_changes = True
        self._fallback = ExecutemanyInsert(
            MAX_PARAMETERS, _insert_ignoring_conflicts, keys_follow_row_order=True
        )
        self._plans: weakref.WeakKeyDictionary[Table, _TablePlan] = weakref.WeakKeyDictionary()

    def rows_per_statement(self, info: ModelInfo) -> int:
        return self._fallback.rows_per_statement(info)

    async def insert(
        self, session: AsyncSession, info: ModelInfo, rows: Seq[Row], *, ignore_conflicts: bool
    ) -> list[Any | None]:
        plan = self._plans.get(info.table)
        if plan is None:
            plan = self._plans[info.table] = _TablePlan(info.table)
        if not plan.usable:
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        if not rows:
            return []
        flat = _flat_if_same_keys(rows)
        if flat is not None:  # the usual case: one key set, transposed in C
            return await self._insert_group(session, info, plan, list(rows), flat, ignore_conflicts)
        ids: list[Any | None] = [None] * len(rows)
        for positions, group in group_by_keys(rows):
            flat = _flat_if_same_keys(group)
            assert flat is not None
            group_ids = await self._insert_group(session, info, plan, group, flat, ignore_conflicts)
            for position, new_id in zip(positions, group_ids, strict=True):
                ids[position] = new_id
        return ids

    async def _insert_group(
        self,
        session: AsyncSession,
        info: ModelInfo,
        plan: _TablePlan,
        rows: list[Row],
        flat: list[Any],
        ignore_conflicts: bool,
    ) -> list[Any | None]:
        table = info.table
        pk_key = info.column_keys[info.pk_attr]
        given = tuple(rows[0])
        pk_known = pk_key in rows[0] or keys_are_known(info, rows)
        if pk_key not in given and pk_key in rows[0]:  # a Python-side key default just filled
            given += (pk_key,)
            flat = _widen(flat, len(given) - 1, [[row[pk_key] for row in rows]])
        connection = await session.connection()
        dialect = connection.dialect

        filled = tuple(key for key in plan.defaults if key not in rows[0])
        keys = given + filled
        if filled:
            flat = _widen(flat, len(given), [plan.defaults[key](len(rows)) for key in filled])
        width = len(keys)
        if width == 0:  # nothing but server defaults: INSERT ... DEFAULT VALUES, row by row
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        for position, key in enumerate(keys):
            column = flat[position::width]
            bound = _bound(table.c[key], dialect, column)
            if bound is not column:
                flat[position::width] = bound

        matched = match_keys(info, rows[0]) if ignore_conflicts else []
        returning = (pk_key, *matched)
        statement = _statement(
            table, keys, len(rows), returning, ignore_conflicts, dialect.identifier_preparer
        )
        returned = await self._run(connection, statement, tuple(flat))
        if not matched and not pk_known:
            return align_returned(info, rows, returned, [], pk_known=False)
        # Compare what RETURNING gives with what was bound (both as stored), not with the
        # Python values: no result processing, and no doubt about round trips.
        compared = [key for key in returning if key in keys]  # the key only when it is known
        bound_rows = [
            dict(zip(compared, values, strict=True))
            for values in zip(*(flat[keys.index(key) :: width] for key in compared), strict=True)
        ]
        aligned = align_returned(info, bound_rows, returned, matched, pk_known=pk_known)
        if not pk_known:
            return aligned
        return [None if new_id is None else row[pk_key] for new_id, row in zip(aligned, rows)]


    async def _run(
        self, connection: AsyncConnection, statement: str, parameters: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        result = await connection.exec_driver_sql(statement, parameters)
        return [tuple(row) for row in result]


def _flat_if_same_keys(rows: Seq[Row]) -> list[Any] | None:
    """All values row after row (in the first row's key order), or None if key sets differ.

    Same length and every key of the first row present means the same key set.
    """
    keys = tuple(rows[0])
    if len(set(map(len, rows))) != 1:
        return None
    try:
        if not keys:
            return []
        if len(keys) == 1:
            return [row[keys[0]] for row in rows]
        return list(chain.from_iterable(map(itemgetter(*keys), rows)))
    except KeyError:
        return None


def _widen(flat: list[Any], width: int, extra: list[list[Any]]) -> list[Any]:
    """Append columns to a row-major flat list of ``width`` values per row."""
    new_width = width + len(extra)
    widened: list[Any] = [None] * (len(extra[0]) * new_width)
    for position in range(width):
        widened[position::new_width] = flat[position::width]
    for offset, values in enumerate(extra):
        widened[width + offset :: new_width] = values
    return widened


def _bound(column: Column[Any], dialect: Dialect, values: Seq[Any]) -> Seq[Any]:
    """The values as the driver gets them: SQLAlchemy's bind processor, column at a time."""
    processor = column.type._cached_bind_processor(dialect)
    if processor is None:
        return values
    impl = column.type.dialect_impl(dialect)
    if isinstance(impl, sqlite.DATETIME) and impl._storage_format == _DEFAULT_DATETIME_FORMAT:
        # "YYYY-MM-DD HH:MM:SS.ffffff", what the processor builds through a %-dict per value;
        # only for plain naive datetimes (not dates, not None, not subclasses, no tzinfo).
        if set(map(type, values)) == {dt.datetime} and not any(map(_TZINFO, values)):
            return list(map(_ISO, values))
    elif isinstance(impl, types.Boolean) and _BOOL_TYPES.issuperset(map(type, values)):
        return values  # the driver binds True/False as 1/0, what the processor returns
    return list(map(processor, values))


@lru_cache(maxsize=64)
def _statement(
    table: Table,
    keys: tuple[str, ...],
    row_count: int,
    returning: tuple[str, ...],
    ignore_conflicts: bool,
    preparer: Any,
) -> str:
    quote = preparer.quote
    names = ", ".join(quote(table.c[key].name) for key in keys)
    placeholders = "(" + ", ".join("?" * len(keys)) + ")"
    values = ", ".join([placeholders] * row_count)
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    returned = ", ".join(quote(table.c[key].name) for key in returning)
    return (
        f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES {values}"
        f"{conflict} RETURNING {returned}"
    )


_STRATEGY = SqliteInsert()


def insert_strategy() -> SqliteInsert:
    return _STRATEGY
