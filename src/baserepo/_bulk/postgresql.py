"""PostgreSQL: COPY where the table allows it, else one array parameter per column.

A batch whose keys come from the table's sequence goes by COPY (``pg_copy``: keys drawn
first, then binary COPY). Otherwise (keys given by the caller, ``GENERATED ALWAYS`` identity
keys, row-level security) ``INSERT INTO t (a, b) SELECT a, b FROM unnest($1::a_type[],
$2::b_type[]) WITH ORDINALITY ... ORDER BY ordinality RETURNING id`` sends the batch as N
arrays instead of N x rows scalars, and its SQL is the same for every batch of the same
columns, so SQLAlchemy compiles it once. ``ORDER BY ordinality`` makes the sequence hand out
ids in input order, as SQLAlchemy's own ``sort_by_parameter_order`` does. Column types that
asyncpg cannot send without SQLAlchemy's help (``ColumnKind.pg_bulk`` false: JSON, ARRAY,
enums, the user's own TypeDecorators) fall back to SQLAlchemy's executemany.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Sequence, Table, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql

from .._column_kinds import kind_of
from .._fast_records import PreparedRows
from ._insert import (
    ExecutemanyInsert,
    align_returned,
    insert_by_key_set,
    keys_are_known,
    match_keys,
)
from .pg_copy import COPY_MIN_ROWS, copy_group, copy_target

if TYPE_CHECKING:
    from collections.abc import Callable
    from collections.abc import Sequence as Seq

    from sqlalchemy import Column
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row
    from ._key_pool import KeyPool

__all__ = ["PostgresqlInsert", "insert_strategy"]

# asyncpg refuses more than 32767 bind parameters in one statement (executemany fallback).
MAX_PARAMETERS = 32_000

DEFAULT_POSTGRESQL_BATCH_SIZE = 10_000
"""COPY's cost per batch is mostly the batch's commit (a WAL flush): 10,000 records measured
best, 2,000 10-15% slower (bench/batch_size.py, docs/performance.md)."""

MAX_ARRAY_ROWS = 1_000_000
"""Rows of one array or COPY statement: far beyond any useful batch; memory decides."""


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return postgresql.insert(table).on_conflict_do_nothing()


class PostgresqlInsert:
    """COPY, or ``INSERT ... SELECT FROM unnest(arrays)``; executemany for the rest."""

    def __init__(self) -> None:
        self.max_parameters = MAX_PARAMETERS
        self.default_batch_size = DEFAULT_POSTGRESQL_BATCH_SIZE
        self.limited_subquery_changes = True
        self._fallback = ExecutemanyInsert(MAX_PARAMETERS, _insert_ignoring_conflicts)
        self._defaults: dict[Table, dict[str, Callable[[int], list[Any]]] | None] = {}

    def rows_per_statement(self, info: ModelInfo) -> int:
        if self._python_defaults(info) is None:
            return self._fallback.rows_per_statement(info)
        return MAX_ARRAY_ROWS  # one array per column: the row count is not a parameter count

    async def insert(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: Seq[Row],
        *,
        ignore_conflicts: bool,
        key_pool: KeyPool | None = None,
    ) -> list[Any | None]:
        defaults = self._python_defaults(info)
        if defaults is None:
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        return await insert_by_key_set(
            rows,
            lambda group: self._insert_group(
                session, info, group, defaults, ignore_conflicts, key_pool
            ),
        )

    async def _insert_group(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: list[Row],
        defaults: dict[str, Callable[[int], list[Any]]],
        ignore_conflicts: bool,
        pool: KeyPool | None,
    ) -> list[Any | None]:
        table = info.table
        pk_known = keys_are_known(info, rows)
        given = list(rows[0])
        # Python-side defaults (default=utcnow) are SQLAlchemy's job in a VALUES insert;
        # with arrays we fill them ourselves, once per row, as SQLAlchemy would.
        filled = [key for key in defaults if key not in rows[0]]
        keys = given + filled
        # Columns, not rows: itemgetter + zip transpose the batch in C, unless the quick
        # look at the batch did it already.
        if isinstance(rows, PreparedRows) and tuple(given) == rows.keys:
            columns: list[Any] = rows.columns
        else:
            columns = [list(map(itemgetter(key), rows)) for key in given]
        arrays: dict[str, Any] = dict(zip(given, columns, strict=True))
        for key in filled:
            arrays[key] = defaults[key](len(rows))

        if len(rows) >= COPY_MIN_ROWS and _keys_from_sequence(info, rows[0]):
            target = await copy_target(session, table, info.pk_column.name)
            if target is not None:
                return await copy_group(
                    session, target, info, keys, arrays, len(rows), ignore_conflicts, pool
                )

        matched = match_keys(info, rows[0]) if ignore_conflicts else []
        statement = _unnest_insert(table, keys, info.column_keys[info.pk_attr], matched)
        if ignore_conflicts:
            statement = statement.on_conflict_do_nothing()
        params = {f"p{i}": arrays[key] for i, key in enumerate(keys)}
        returned = [tuple(r) for r in await session.execute(statement, params)]
        return align_returned(info, rows, returned, matched, pk_known=pk_known)

    def _python_defaults(self, info: ModelInfo) -> dict[str, Callable[[int], list[Any]]] | None:
        """Column key -> value maker, or None when this table needs the fallback."""
        table = info.table
        if table not in self._defaults:
            self._defaults[table] = _defaults_or_none(table)
        return self._defaults[table]


def _keys_from_sequence(info: ModelInfo, sample: Row) -> bool:
    """The rows leave their key to the database's sequence (no key given, no Python default)."""
    return info.column_keys[info.pk_attr] not in sample and info.pk_column.default is None


def _defaults_or_none(table: Table) -> dict[str, Callable[[int], list[Any]]] | None:
    makers: dict[str, Callable[[int], list[Any]]] = {}
    for column in table.columns:
        if not kind_of(column.type, "postgresql").pg_bulk:
            return None
        default = column.default
        if default is None:
            continue
        if isinstance(default, Sequence) or not (default.is_scalar or default.is_callable):
            return None
        maker = _maker(default.arg, callable_=default.is_callable)  # type: ignore[attr-defined]
        try:
            maker(1)
        except TypeError:
            return None  # a context-sensitive default: only SQLAlchemy can evaluate it
        makers[column.key] = maker
    return makers


def _maker(arg: Any, *, callable_: bool) -> Callable[[int], list[Any]]:
    if callable_:
        # Called once per row, as SQLAlchemy does (uuid4 must differ row to row).
        return lambda n: [arg(None) for _ in range(n)]
    return lambda n: [arg] * n


def _unnest_insert(table: Table, keys: list[str], pk_key: str, matched: list[str]) -> Any:
    columns: list[Column[Any]] = [table.c[key] for key in keys]
    arrays = [
        cast(bindparam(f"p{i}", type_=postgresql.ARRAY(c.type)), postgresql.ARRAY(c.type))
        for i, c in enumerate(columns)
    ]
    source = (
        func.unnest(*arrays)
        .table_valued(*keys, with_ordinality="baserepo_ord", name="baserepo_src")
        .render_derived()
    )
    rows = select(*(source.c[key] for key in keys)).order_by(source.c.baserepo_ord)
    returning = [table.c[pk_key], *(table.c[k] for k in matched)]
    return (
        postgresql.insert(table)
        .from_select(keys, rows, include_defaults=False)
        .returning(*returning)
    )


def insert_strategy() -> PostgresqlInsert:
    return PostgresqlInsert()
