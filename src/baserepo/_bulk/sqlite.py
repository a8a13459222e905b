"""SQLite: the batch as multi-row ``INSERT ... VALUES (?, ...), (?, ...)`` statements.

SQLAlchemy's own executemany path ("insertmanyvalues") spends most of its time per value:
a parameter dict per row, then each column's bind processor called value by value (a
``DateTime`` is formatted through a ``%``-dict). Here the statement text is built once per
(columns, row count) and the parameters column by column: a column without a bind processor
costs nothing, a ``DateTime`` in SQLAlchemy's default SQLite storage format is converted by
``datetime.isoformat`` (the same text, checked per column), other types go through
SQLAlchemy's own bind processor. Statements run with ``exec_driver_sql`` on the session's
connection, so they are inside the transaction or SAVEPOINT SQLAlchemy opened, engine events
and logging see them, and driver errors arrive as SQLAlchemy exceptions.

Which id each row got:

* Keys known beforehand (given, or a Python-side default such as ``uuid4``) or
  ``ignore_conflicts``: ``RETURNING`` the key (and the unique columns), matched back to the
  rows as in ``_insert``, comparing returned values with the values that were bound.
* An autoincrement key (the usual case): ``RETURNING`` costs SQLite a buffered result row and
  Python a step and a tuple per row, so only the first row of the
  batch is inserted with ``RETURNING`` (its key, and the number of triggers on the table);
  the rest go without. SQLite gives a rowid table's new row ``max(rowid) + 1`` (the guarantee
  SQLAlchemy's ``sort_by_parameter_order`` relies on, here in its strict form), the batch
  holds the database's write lock from that first row on, and with no trigger on the table
  nothing else can insert in between: a statement of ``n`` rows after the row with key ``k``
  gets ``k + 1 .. k + n``. Each statement is checked (``rowcount == n``, ``lastrowid == k +
  n``), and the first row must show that the key is the rowid (``INTEGER PRIMARY KEY``, not
  ``WITHOUT ROWID``); a table with triggers, a key that is not the rowid, or one too close to
  the largest rowid (where SQLite starts picking rowids at random) gets ``RETURNING`` for
  every row, as before.

Tables this path cannot serve (a column type with a SQL-level ``bind_expression``, a default
that is a SQL expression or needs the execution context, a row with no column at all) go
through SQLAlchemy's executemany.

bulk_update/bulk_delete: one ``UPDATE/DELETE ... WHERE pk IN (SELECT pk ... LIMIT n)
RETURNING pk`` per batch (``dialect.subquery_change``): SQLite locks the whole database for a
write, so the statement is atomic against other writers.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Callable
from functools import lru_cache
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ColumnElement, Insert, Sequence, Table, event, types
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.compiler import compiles

from .._fast_records import PreparedRows
from .._lookups import CaseSensitiveMatch
from .._telemetry import note_strategy
from .._transactions import register_savepoint_check
from ._insert import (
    ExecutemanyInsert,
    align_returned,
    insert_by_key_set,
    keys_are_known,
    match_keys,
)
from ._upsert import Outcome, UpsertPlan, read_then_write
from .dialect import ChangeBatch, ChangeTarget, keyed_change, subquery_change
from .rows import case_rows_per_update, case_update_rows
from .values_rows import values_rows_per_update, values_update_rows

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Sequence as Seq

    from sqlalchemy import Column
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.ext.asyncio import AsyncEngine as AsyncEngine
    from sqlalchemy.sql.compiler import SQLCompiler

    from .._model import ModelInfo
    from ._insert import Row
    from ._key_pool import KeyPool

__all__ = ["SqliteDialect"]

DEFAULT_SQLITE_BATCH_SIZE = 10_000
"""Records per batch by default: a batch costs one commit (a journal sync) on top of its
rows, so batches are large; the measurements behind the number are in docs/performance.md."""
MAX_BATCH_ROWS = 1_000_000
"""The largest batch accepted: the batch is split into statements within the parameter
limit, so the limit does not clamp it."""
MAX_ROWID = 2**63 - 1
"""Past this SQLite picks new rowids at random: keys no longer follow row order."""

_ISO = methodcaller("isoformat", " ", "microseconds")
_TZINFO = attrgetter("tzinfo")
_BOOL_TYPES = frozenset({bool, type(None)})
_DATETIME_SAMPLES = (dt.datetime(2001, 2, 3, 4, 5, 6), dt.datetime(2001, 2, 3, 4, 5, 6, 7))

Binder = Callable[[list[Any]], list[Any]]
"""A column's values (a list) made into what the driver is given."""


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return sqlite.insert(table).on_conflict_do_nothing()


class _TablePlan:
    """What the fast path needs to know about one table, or that it cannot serve it."""

    def __init__(self, table: Table) -> None:
        self.defaults: dict[str, Callable[[int], list[Any]]] = {}
        # WITHOUT ROWID tables have no rowid to count keys from.
        self.has_rowid = table.dialect_options["sqlite"].get("with_rowid", True) is not False
        self.usable = all(self._servable(column) for column in table.columns)
        self._binders: dict[str, Binder | None] = {}

    def binder(self, column: Column[Any], dialect: Dialect) -> Binder | None:
        """The column's values as the driver gets them (None: as they are); one dialect per
        plan, as each bulk dialect keeps its own plans."""
        if column.key not in self._binders:
            self._binders[column.key] = _binder(column, dialect)
        return self._binders[column.key]

    def _servable(self, column: Column[Any]) -> bool:
        # Private, and needed: whether the type wraps its parameter in SQL (bind_expression),
        # which only SQLAlchemy's compiler renders; no public attribute tells.
        if column.type._has_bind_expression:
            return False
        default = column.default
        if default is None:
            return True
        if isinstance(default, Sequence) or not (default.is_scalar or default.is_callable):
            return False  # a SQL expression (default=func.now()) or a sequence
        arg: Any = default.arg  # type: ignore[attr-defined]
        if default.is_scalar:
            self.defaults[column.key] = lambda n: [arg] * n
            return True
        try:
            arg(None)
        except TypeError:
            return False  # a context-sensitive default: only SQLAlchemy can evaluate it
        # Called once per row, as SQLAlchemy does (uuid4 must differ row to row).
        self.defaults[column.key] = lambda n: [arg(None) for _ in range(n)]
        return True


class SqliteDialect:
    """Multi-row ``VALUES`` statements; SQLAlchemy's executemany for tables it can't serve."""

    names: ClassVar[tuple[str, ...]] = ("sqlite",)
    driver: ClassVar[str | None] = None
    requirement: ClassVar[str] = "SQLite 3.35+"

    @staticmethod
    def prepare_engine(engine: AsyncEngine) -> None:
        enable_savepoints(engine)

    def __init__(self, dialect: Dialect) -> None:
        self.db_system = "sqlite"
        # SQLAlchemy's limit for the dialect, below SQLITE_MAX_VARIABLE_NUMBER (32766).
        self.max_parameters: int = dialect.insertmanyvalues_max_parameters
        self.default_batch_size = DEFAULT_SQLITE_BATCH_SIZE
        # RETURNING on UPDATE/DELETE comes with SQLite 3.35, as on INSERT.
        self._change_returning = {
            True: dialect.delete_returning,
            False: dialect.update_returning,
        }
        # SQLite hands out rowids in row order within one multi-row INSERT.
        self._fallback = ExecutemanyInsert(
            self.max_parameters, _insert_ignoring_conflicts, keys_follow_row_order=True
        )
        self._plans: weakref.WeakKeyDictionary[Table, _TablePlan] = weakref.WeakKeyDictionary()

    def rows_per_statement(self, info: ModelInfo) -> int:
        if not self._plan(info.table).usable:
            return self._fallback.rows_per_statement(info)
        return MAX_BATCH_ROWS  # the batch is split into statements within the limit

    def change_batch_size(self, batch_size: int, *, deleting: bool) -> int:
        if self._change_returning[deleting]:
            return batch_size  # the batch is chosen by a subquery: no key is a parameter
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
        if self._change_returning[values is None]:
            return await subquery_change(session, target, condition, values, size, last)
        return await keyed_change(session, target, condition, values, size, last)

    def rows_per_update(
        self, target: ChangeTarget, columns: Seq[str], batch_size: int | None
    ) -> int:
        if self._change_returning[False]:
            return values_rows_per_update(self.max_parameters, columns, batch_size)
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
        if self._change_returning[False]:  # UPDATE ... FROM came before RETURNING (3.33)
            return await values_update_rows(session, target, condition, keys, columns, common)
        return await case_update_rows(
            session, target, condition, keys, columns, common, returning=False
        )

    def _plan(self, table: Table) -> _TablePlan:
        plan = self._plans.get(table)
        if plan is None:
            plan = self._plans[table] = _TablePlan(table)
        return plan

    async def upsert(
        self, session: AsyncSession, info: ModelInfo, rows: Seq[Row], plan: UpsertPlan
    ) -> list[tuple[Any, Outcome]]:
        return await read_then_write(self, session, info, rows, plan)

    async def insert(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: Seq[Row],
        *,
        ignore_conflicts: bool,
        key_pool: KeyPool | None = None,  # rowids are reused after a rollback anyway
    ) -> list[Any | None]:
        plan = self._plan(info.table)
        if not plan.usable:
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        if not rows:
            return []

        async def one_key_set(group: list[Row]) -> list[Any | None]:
            flat = _flat_if_same_keys(group)
            if flat is None:  # pragma: no cover - a group has one key set by construction
                raise RuntimeError("rows of one key group differ in their keys")
            return await self._insert_group(session, info, plan, group, flat, ignore_conflicts)

        return await insert_by_key_set(rows, one_key_set)

    async def _insert_group(
        self,
        session: AsyncSession,
        info: ModelInfo,
        plan: _TablePlan,
        rows: Seq[Row],
        flat: list[Any],
        ignore_conflicts: bool,
    ) -> list[Any | None]:
        """Rows with one key set; ``flat`` holds their values row after row."""
        table = info.table
        pk_key = info.column_keys[info.pk_attr]
        given = tuple(rows[0])
        pk_known = pk_key in rows[0] or keys_are_known(info, list(rows))
        if pk_known and pk_key not in given:  # a Python-side key default, just filled in
            given += (pk_key,)
            flat = _widen(flat, len(given) - 1, [[row[pk_key] for row in rows]])
        filled = tuple(key for key in plan.defaults if key not in rows[0])
        if filled:
            flat = _widen(flat, len(given), [plan.defaults[key](len(rows)) for key in filled])
        keys = given + filled
        width = len(keys)
        if width == 0:  # nothing but server defaults: INSERT ... DEFAULT VALUES, row by row
            return await self._fallback.insert(
                session, info, rows, ignore_conflicts=ignore_conflicts
            )
        connection = await session.connection()
        dialect = connection.dialect
        for position, key in enumerate(keys):
            binder = plan.binder(table.c[key], dialect)
            if binder is not None:
                values = flat[position::width]
                bound = binder(values)
                if bound is not values:
                    flat[position::width] = bound
        note_strategy("values")
        batch = _Batch(self, connection, table, keys, flat)

        if not ignore_conflicts and not pk_known and plan.has_rowid:
            return await batch.counting_keys(pk_key)
        matched = match_keys(info, rows[0]) if ignore_conflicts else []
        returned = await batch.returning(0, len(rows), (pk_key, *matched), ignore_conflicts)
        if not matched and not pk_known:
            return align_returned(info, list(rows), returned, [], pk_known=False)
        # Compare what RETURNING gives with what was bound (both as stored), not with the
        # Python values: no result processing, and no doubt about round trips.
        compared = [key for key in (pk_key, *matched) if key in keys]
        bound_rows = [
            dict(zip(compared, values, strict=True))
            for values in zip(*(flat[keys.index(key) :: width] for key in compared), strict=True)
        ]
        aligned = align_returned(info, bound_rows, returned, matched, pk_known=pk_known)
        if not pk_known:
            return aligned
        return [None if i is None else row[pk_key] for i, row in zip(aligned, rows, strict=True)]


class _Batch:
    """One key group's bound values, sent in statements within the parameter limit."""

    def __init__(
        self,
        strategy: SqliteDialect,
        connection: AsyncConnection,
        table: Table,
        keys: tuple[str, ...],
        flat: list[Any],
    ) -> None:
        self.connection = connection
        self.table = table
        self.keys = keys
        self.flat = flat
        self.width = len(keys)
        self.row_count = len(flat) // self.width
        self.per_statement = max(1, strategy.max_parameters // self.width)
        self.preparer = connection.dialect.identifier_preparer

    def _chunks(self, start: int) -> list[tuple[int, int]]:
        step = self.per_statement
        return [(s, min(step, self.row_count - s)) for s in range(start, self.row_count, step)]

    def _parameters(self, start: int, count: int) -> tuple[Any, ...]:
        return tuple(self.flat[start * self.width : (start + count) * self.width])

    async def returning(
        self, start: int, stop: int, returned: tuple[str, ...], ignore_conflicts: bool
    ) -> list[tuple[Any, ...]]:
        """Insert rows ``start:stop``; the RETURNING rows of every statement, in order."""
        rows: list[tuple[Any, ...]] = []
        for first, count in self._chunks(start):
            count = min(count, stop - first)
            if count <= 0:
                break
            statement = _statement(
                self.table, self.keys, count, returned, ignore_conflicts, self.preparer
            )
            result = await self.connection.exec_driver_sql(
                statement, self._parameters(first, count)
            )
            rows += [tuple(row) for row in result]
        return rows

    async def counting_keys(self, pk_key: str) -> list[Any | None]:
        """Autoincrement keys: RETURNING for the first row only, then counted (module doc)."""
        statement = _first_row_statement(self.table, self.keys, pk_key, self.preparer)
        parameters = (*self._parameters(0, 1), self.table.name, self.table.name)
        result = await self.connection.exec_driver_sql(statement, parameters)
        [(first_key, triggers)] = [tuple(row) for row in result]
        is_rowid = type(first_key) is int and first_key == result.lastrowid
        if triggers or not is_rowid or first_key > MAX_ROWID - self.row_count:
            rest = await self.returning(1, self.row_count, (pk_key,), False)
            return [first_key, *sorted(row[0] for row in rest)]
        ids: list[Any | None] = [first_key]
        last = first_key
        for first, count in self._chunks(1):
            statement = _statement(self.table, self.keys, count, (), False, self.preparer)
            result = await self.connection.exec_driver_sql(
                statement, self._parameters(first, count)
            )
            if result.rowcount != count or result.lastrowid != last + count:
                raise RuntimeError(
                    f"SQLite gave {result.rowcount} of {count} rows keys up to "
                    f"{result.lastrowid}, not {last + 1}..{last + count}; ids can't be matched "
                    f"to records (is something else writing to {self.table.name}?)"
                )
            ids.extend(range(last + 1, last + count + 1))
            last += count
        return ids


def _flat_if_same_keys(rows: Seq[Row]) -> list[Any] | None:
    """All values row after row (in the first row's key order), or None if key sets differ.

    Rows of one length that all hold every key of the first row have its key set.
    """
    keys = tuple(rows[0])
    columns = getattr(rows, "columns", None)  # PreparedRows: the quick look built them
    if isinstance(rows, PreparedRows) and columns is not None and keys == rows.keys:
        flat: list[Any] = [None] * (len(rows) * len(keys))
        for position, values in enumerate(columns):
            flat[position :: len(keys)] = values
        return flat
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
    """Append columns (``extra``, one list per column) to ``flat``, ``width`` values a row."""
    new_width = width + len(extra)
    widened: list[Any] = [None] * (len(extra[0]) * new_width)
    for position in range(width):
        widened[position::new_width] = flat[position::width]
    for offset, values in enumerate(extra):
        widened[width + offset :: new_width] = values
    return widened


def _binder(column: Column[Any], dialect: Dialect) -> Binder | None:
    """SQLAlchemy's bind processor for the column, applied a column at a time, with a
    shortcut for the two types whose processor only reformats the common values."""
    impl = column.type.dialect_impl(dialect)
    processor = impl.bind_processor(dialect)
    if processor is None:
        return None

    def processed(values: list[Any]) -> list[Any]:
        return list(map(processor, values))

    if isinstance(impl, sqlite.DATETIME) and all(
        processor(sample) == _ISO(sample) for sample in _DATETIME_SAMPLES
    ):
        # "YYYY-MM-DD HH:MM:SS.ffffff" (the processor was just seen producing it), which
        # the processor builds through a %-dict per value; only for plain naive datetimes
        # (not dates, not None, not subclasses, no tzinfo).
        def datetimes(values: list[Any]) -> list[Any]:
            if set(map(type, values)) == {dt.datetime} and not any(map(_TZINFO, values)):
                return list(map(_ISO, values))
            return processed(values)

        return datetimes
    if isinstance(impl, types.Boolean):

        def booleans(values: list[Any]) -> list[Any]:
            if _BOOL_TYPES.issuperset(map(type, values)):
                return values  # the driver binds True/False as 1/0, what the processor returns
            return processed(values)

        return booleans
    return processed


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
    statement = f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES {values}"
    if ignore_conflicts:
        statement += " ON CONFLICT DO NOTHING"
    if returning:
        statement += " RETURNING " + ", ".join(quote(table.c[key].name) for key in returning)
    return statement


@lru_cache(maxsize=64)
def _first_row_statement(table: Table, keys: tuple[str, ...], pk_key: str, preparer: Any) -> str:
    """One row, RETURNING its key and the number of triggers on the table (any schema's
    TEMP triggers counted too); the table name is bound twice after the row's values."""
    schema = f"{preparer.quote_schema(table.schema)}." if table.schema else ""
    # tbl_name keeps the spelling of CREATE TRIGGER ... ON EVENTS; names ignore case.
    where = "type = 'trigger' AND tbl_name = ? COLLATE NOCASE"
    triggers = (
        f"(SELECT count(*) FROM {schema}sqlite_master WHERE {where})"
        f" + (SELECT count(*) FROM sqlite_temp_master WHERE {where})"
    )
    return (
        _statement(table, keys, 1, (), False, preparer)
        + f" RETURNING {preparer.quote(table.c[pk_key].name)}, {triggers}"
    )


# SQLite's LIKE ignores ASCII case whatever the collation; its GLOB does not.
@compiles(CaseSensitiveMatch, "sqlite")
def _compile_glob(element: CaseSensitiveMatch, compiler: SQLCompiler, **kw: Any) -> str:
    _like, glob = element.clauses.clauses
    return str(compiler.process(glob, **kw))


_PATCHED = "_baserepo_sqlite_savepoints"


def enable_savepoints(engine: AsyncEngine) -> AsyncEngine:
    """Apply SQLAlchemy's documented fix for SAVEPOINT on pysqlite/aiosqlite; idempotent.

    The driver's default delays BEGIN until the first DML statement, so a SAVEPOINT that
    opens a transaction starts one of its own and its RELEASE commits. The recipe turns the
    driver's handling off and emits BEGIN from SQLAlchemy's ``begin`` event instead.
    """
    sync_engine = engine.sync_engine
    if getattr(sync_engine, _PATCHED, False):
        return engine

    @event.listens_for(sync_engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(sync_engine, "begin")
    def _emit_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    setattr(sync_engine, _PATCHED, True)
    return engine


def _savepoints_break(dbapi_connection: Any) -> str | None:
    if getattr(dbapi_connection, "isolation_level", None) is None:
        return None
    return (
        "this SQLite engine keeps the driver's default transaction handling, under which a "
        "SAVEPOINT can commit on its own and a rollback would not undo it. Create the engine "
        "with baserepo.create_engine(url) or apply baserepo.enable_sqlite_savepoints(engine) "
        "(SQLAlchemy's documented recipe)."
    )


register_savepoint_check("sqlite", _savepoints_break)
