"""bulk_update_rows as a join with a VALUES table, for databases that have ``UPDATE ... FROM``
and ``RETURNING`` but no arrays (SQLite 3.35+):

    WITH baserepo_v(k, c0, c1) AS (VALUES (?, ?, ?), (?, ?, ?), ...)
    UPDATE t SET c0 = baserepo_v.c0, c1 = baserepo_v.c1 FROM baserepo_v
    WHERE t.pk = baserepo_v.k AND condition RETURNING t.pk

The database finds each row's values by joining on the key, once per row, where a CASE tries a
row's WHEN branches one after the other (its cost grows with the square of the statement's
rows): SQLite's own work for 10,000 rows of two columns was 0.076 s in CASE statements of 500
rows and 0.014-0.017 s in these of 500-2,000 (``bench/probes/sqlite_row_updates.py``). A
condition holding values of its own (none does today: it is the soft-delete filter or nothing)
takes the CASE form instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, bindparam, text

from .._telemetry import note_strategy
from ._row_statements import (
    StatementsByShape,
    common_name,
    condition_shape,
    key_name,
    row_parameters,
    value_name,
)
from .rows import case_update_rows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy import TextualSelect
    from sqlalchemy.ext.asyncio import AsyncSession

    from .dialect import ChangeTarget

__all__ = ["VALUES_MAX_ROWS", "values_rows_per_update", "values_update_rows"]

VALUES_MAX_ROWS = 2_000
"""Rows of one statement (one batch, one transaction) at most. bulk_update_rows of 10,000 rows of
two columns took 0.156 s in statements of 500, 0.148 s of 2,000 and 0.253 s of 5,000
(``bench/probes/sqlite_row_updates.py``): past ~2,000 rows the parameters' processing and the
statement's text cost more than the statements saved."""

_STATEMENTS: StatementsByShape[TextualSelect] = StatementsByShape(16)


def values_rows_per_update(
    max_parameters: int, columns: Sequence[str], batch_size: int | None
) -> int:
    """Rows of one statement: one parameter per row and column, and the key."""
    fits = max(1, max_parameters // (len(columns) + 1))
    return min(batch_size or VALUES_MAX_ROWS, VALUES_MAX_ROWS, fits)


async def values_update_rows(
    session: AsyncSession,
    target: ChangeTarget,
    condition: ColumnElement[bool],
    keys: list[Any],
    columns: Mapping[str, list[Any]],
    common: Mapping[str, Any],
) -> list[Any]:
    """The keys the statement changed (rows that matched ``condition``)."""
    names = tuple(columns)
    shape = (target.table, names, len(keys), tuple(common), condition_shape(condition))
    if shape[-1] is None:  # a condition with values of its own: the portable CASE form
        return await case_update_rows(
            session, target, condition, keys, columns, common, returning=True
        )
    statement = _STATEMENTS.get_or_build(
        shape, lambda: _statement(session, target, condition, names, len(keys), tuple(common))
    )
    note_strategy("values_join")
    parameters = row_parameters(keys, columns, common)
    return list((await session.execute(statement, parameters)).scalars())


def _statement(
    session: AsyncSession,
    target: ChangeTarget,
    condition: ColumnElement[bool],
    names: tuple[str, ...],
    rows: int,
    common: tuple[str, ...],
) -> TextualSelect:
    # Written as text: SQLAlchemy does not cache a VALUES construct holding parameters (its
    # cache key is None), so it would compile thousands of parameters for every batch; a text
    # clause is compiled once per statement object, kept by shape.
    pk, table = target.pk, target.table
    dialect = session.sync_session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    table_sql = dialect.identifier_preparer.format_table(table)
    width = range(len(names))
    rows_sql = ", ".join(
        "(" + ", ".join([f":{key_name(i)}", *(f":{value_name(j, i)}" for j in width)]) + ")"
        for i in range(rows)
    )
    sets = [f"{quote(table.c[name].name)} = :{common_name(name)}" for name in common]
    sets += [f"{quote(table.c[name].name)} = baserepo_v.c{j}" for j, name in enumerate(names)]
    pk_sql = f"{table_sql}.{quote(pk.name)}"
    where = str(condition.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    sql = (
        f"WITH baserepo_v(k{''.join(f', c{j}' for j in width)}) AS (VALUES {rows_sql}) "
        f"UPDATE {table_sql} SET {', '.join(sets)} FROM baserepo_v "
        f"WHERE {pk_sql} = baserepo_v.k AND ({where}) RETURNING {pk_sql}"
    )
    # Typed parameters: each value is bound as its column binds it (datetimes on SQLite, JSON).
    types = [table.c[name].type for name in names]
    binds = [bindparam(common_name(name), type_=table.c[name].type) for name in common]
    for i in range(rows):
        binds.append(bindparam(key_name(i), type_=pk.type))
        binds.extend(bindparam(value_name(j, i), type_=t) for j, t in enumerate(types))
    return text(sql).bindparams(*binds).columns(pk)
