"""PostgreSQL: the whole batch as one array parameter per column.

``INSERT INTO t (a, b) SELECT a, b FROM unnest($1::a_type[], $2::b_type[]) WITH ORDINALITY
... ORDER BY ordinality RETURNING id`` sends a batch as N arrays instead of N x rows scalars,
and its SQL is the same for every batch of the same columns, so SQLAlchemy compiles it once.
``ORDER BY ordinality`` makes the sequence hand out ids in input order, as SQLAlchemy's own
``sort_by_parameter_order`` does. Column types that asyncpg cannot send as arrays without
help (JSON, ARRAY, enums, custom TypeDecorators) fall back to SQLAlchemy's executemany.
"""

from __future__ import annotations

from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Sequence, Table, any_, bindparam, cast, func, select, types
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql

from .._fast_records import PreparedRows
from ._insert import (
    ExecutemanyInsert,
    align_returned,
    group_by_keys,
    keys_are_known,
    match_keys,
)
from .pg_copy import COPY_MIN_ROWS, CopyTarget, copy_target

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from collections.abc import Sequence as Seq

    from sqlalchemy import Column
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row

__all__ = ["UnnestInsert", "insert_strategy"]

# asyncpg refuses more than 32767 bind parameters in one statement (executemany fallback).
MAX_PARAMETERS = 32_000

DEFAULT_POSTGRESQL_BATCH_SIZE = 10_000
"""COPY's cost per batch is mostly the batch's commit (a WAL flush): 10,000 records measured
best, 2,000 10-15% slower (bench/batch_size.py, docs/performance.md)."""

MAX_ARRAY_ROWS = 1_000_000
"""Rows of one array or COPY statement: far beyond any useful batch; memory decides."""

_ARRAY_SAFE = (
    types.Integer,
    types.String,
    types.Boolean,
    types.Float,
    types.Numeric,
    types.DateTime,
    types.Date,
    types.Time,
    types.Interval,
    types.Uuid,
    types.LargeBinary,
)
_NOT_ARRAY_SAFE = (types.TypeDecorator, types.Enum, types.JSON, types.ARRAY, types.PickleType)


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return postgresql.insert(table).on_conflict_do_nothing()


class UnnestInsert:
    """``INSERT ... SELECT FROM unnest(arrays)``; executemany for tables it cannot serve."""

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
        self, session: AsyncSession, info: ModelInfo, rows: Seq[Row], *, ignore_conflicts: bool
    ) -> list[Any | None]:
        defaults = self._python_defaults(info)
        if defaults is None:
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        ids: list[Any | None] = [None] * len(rows)
        for positions, group in group_by_keys(rows):
            group_ids = await self._insert_group(session, info, group, defaults, ignore_conflicts)
            for position, new_id in zip(positions, group_ids, strict=True):
                ids[position] = new_id
        return ids

    async def _insert_group(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: list[Row],
        defaults: dict[str, Callable[[int], list[Any]]],
        ignore_conflicts: bool,
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
                return await _copy_group(
                    session, target, info, keys, arrays, len(rows), ignore_conflicts
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


async def _copy_group(
    session: AsyncSession,
    target: CopyTarget,
    info: ModelInfo,
    keys: list[str],
    arrays: dict[str, Any],
    count: int,
    ignore_conflicts: bool,
) -> list[Any | None]:
    table = info.table
    pk_name = info.pk_column.name
    names = [pk_name, *(table.c[key].name for key in keys)]
    if ignore_conflicts:
        checked = _checkable_unique_columns(info, keys)
        if checked:
            new_rows = await _new_rows(session, table, checked, arrays, count)
            if not any(new_rows):
                return [None] * count
            # Keys only for the rows that will be written.
            new_ids = await target.take_keys(session, sum(new_rows))
            handed_out = iter(new_ids)
            kept = [next(handed_out) if new else None for new in new_rows]
            new_columns = [list(compress(arrays[key], new_rows)) for key in keys]
            try:
                # Someone may write a clashing row between the look and the COPY, or the
                # database may know a unique index the model does not: then the staged way.
                async with session.begin_nested():
                    await target.copy(session, names, zip(new_ids, *new_columns, strict=True))
            except sa_exc.IntegrityError:
                pass
            else:
                return kept
        ids = await target.take_keys(session, count)
        records = _records(ids, keys, arrays)
        written = await target.copy_ignoring_conflicts(session, pk_name, names, records)
        return [key if key in written else None for key in ids]
    ids = await target.take_keys(session, count)
    await target.copy(session, names, _records(ids, keys, arrays))
    return list(ids)


def _records(ids: list[int], keys: list[str], arrays: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    # Rows again, now with their keys, made one at a time while COPY encodes them.
    return zip(ids, *(arrays[key] for key in keys), strict=True)


def _checkable_unique_columns(info: ModelInfo, keys: list[str]) -> list[str]:
    """The columns whose values decide every possible conflict of these rows, when each
    unique constraint besides the key is one column the rows carry; else []."""
    checked: list[str] = []
    for group in info.unique_groups:
        if group == (info.pk_attr,):
            continue  # keys come fresh from the sequence
        if len(group) != 1 or info.column_keys[group[0]] not in keys:
            return []
        checked.append(info.column_keys[group[0]])
    return checked


async def _new_rows(
    session: AsyncSession, table: Table, checked: list[str], arrays: dict[str, Any], count: int
) -> list[bool]:
    """Per row: True unless a row already holds one of its unique values, or an earlier row
    of the batch does (the first one wins, as with ``ON CONFLICT DO NOTHING``)."""
    new_rows = [True] * count
    for key in checked:
        column = table.c[key]
        values = arrays[key]
        present = [value for value in values if value is not None]
        lookup = select(column).where(
            column == any_(bindparam("present", type_=postgresql.ARRAY(column.type)))
        )
        taken = set((await session.execute(lookup, {"present": present})).scalars())
        if len(set(present)) == len(present):
            # No value repeats within the batch (the usual case): one C-level pass.
            clashes = list(map(taken.__contains__, values))
            new_rows = [new and not clash for new, clash in zip(new_rows, clashes, strict=True)]
            continue
        for position, value in enumerate(values):
            if value is None:
                continue  # NULLs never clash
            if value in taken:
                new_rows[position] = False
            else:
                taken.add(value)
    return new_rows


def _defaults_or_none(table: Table) -> dict[str, Callable[[int], list[Any]]] | None:
    makers: dict[str, Callable[[int], list[Any]]] = {}
    for column in table.columns:
        if isinstance(column.type, _NOT_ARRAY_SAFE) or not isinstance(column.type, _ARRAY_SAFE):
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


def insert_strategy() -> UnnestInsert:
    return UnnestInsert()
