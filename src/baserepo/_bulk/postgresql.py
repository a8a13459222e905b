"""PostgreSQL, any driver (``postgresql+psycopg`` among them): one array parameter per column.

Inserts: ``INSERT INTO t (a, b) SELECT a, b FROM unnest($1::a_type[], $2::b_type[]) WITH
ORDINALITY ... ORDER BY ordinality RETURNING id`` sends the batch as N arrays instead of
N x rows scalars, and its SQL is the same for every batch of the same columns, so SQLAlchemy
compiles it once. ``ORDER BY ordinality`` makes the sequence hand out ids in input order, as
SQLAlchemy's own ``sort_by_parameter_order`` does. Column types that the driver cannot send
without SQLAlchemy's help (``ColumnKind.pg_bulk`` false: JSON, ARRAY, enums, the user's own
TypeDecorators) go through SQLAlchemy's executemany. ``postgresql_asyncpg`` adds COPY through
the ``_by_copy`` hook.

bulk_update/bulk_delete: one statement per batch. The first batch of a call counts (up to
``n``) the matching rows and, when there are fewer than ``n``, is the plain statement itself,
guarded by that count: most calls need nothing else and cost what the single statement costs.
Otherwise batches go in key order: a subquery chooses the next ``n`` matching keys above the
last batch (``pk > last ORDER BY pk LIMIT n``) and gives their count and last key ``bound``;
the change targets ``pk > last AND pk <= bound AND <condition>``, which are exactly the chosen
rows in the statement's snapshot, and hands its keys back as one array. Whether more batches
follow is decided on the chosen rows, not on the changed ones. A row another transaction
changed while the batch waited for its lock is re-checked on its newest version (READ
COMMITTED's re-check): by key and condition, both of which survive an update. (Rows are not
reached by ``ctid``: an updated row has a new one, and the re-check would silently skip it.)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Insert,
    Sequence,
    Table,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    types,
    update,
)
from sqlalchemy.dialects import postgresql

from .._column_kinds import kind_of
from .._fast_records import PreparedRows
from .._replicas import WalPositions, register_wal_positions
from .._telemetry import note_strategy
from ._insert import (
    ExecutemanyInsert,
    align_returned,
    insert_by_key_set,
    keys_are_known,
    match_keys,
)
from ._upsert import Outcome, UpsertPlan, existing_keys
from .dialect import ChangeBatch, ChangeTarget, change_statement
from .rows import case_rows_per_update, case_update_rows

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Sequence as Seq

    from sqlalchemy import Column
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine as AsyncEngine
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row
    from ._key_pool import KeyPool

__all__ = ["ArrayMaker", "PostgresqlDialect", "differs"]

DEFAULT_POSTGRESQL_BATCH_SIZE = 10_000
"""Records per batch by default: a batch costs one commit (a WAL flush) on top of its rows,
so batches are large; the measurements behind the number are in docs/performance.md."""

MAX_ARRAY_ROWS = 1_000_000
"""Rows of one array or COPY statement: no parameter limit applies (one parameter per
column); the batch's memory is the only bound."""

ArrayMaker = Callable[[int], list[Any]]
"""A Python-side column default made into ``n`` values, one per row."""

# A row a statement inserted has no deleting transaction yet; one ON CONFLICT updated has ours.
_INSERTED = literal_column("xmax = 0", Boolean)


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return postgresql.insert(table).on_conflict_do_nothing()


class PostgresqlDialect:
    """``INSERT ... SELECT FROM unnest(arrays)``, executemany for the rest; changes by range."""

    names: ClassVar[tuple[str, ...]] = ("postgresql",)
    driver: ClassVar[str | None] = None
    requirement: ClassVar[str] = "PostgreSQL"

    @staticmethod
    def prepare_engine(engine: AsyncEngine) -> None:
        """Nothing: SAVEPOINT works as the driver comes."""

    def __init__(self, dialect: Dialect) -> None:
        self.db_system = "postgresql"
        # The executemany fallback sends one parameter per value: SQLAlchemy's limit for
        # this dialect keeps it below the driver's (asyncpg refuses more than 32767).
        self.max_parameters: int = dialect.insertmanyvalues_max_parameters
        self.default_batch_size = DEFAULT_POSTGRESQL_BATCH_SIZE
        self._fallback = ExecutemanyInsert(self.max_parameters, _insert_ignoring_conflicts)
        self._defaults: weakref.WeakKeyDictionary[Table, dict[str, ArrayMaker] | None] = (
            weakref.WeakKeyDictionary()
        )

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
        defaults: dict[str, ArrayMaker],
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

        copied = await self._by_copy(session, info, rows, keys, arrays, ignore_conflicts, pool)
        if copied is not None:
            return copied

        note_strategy("unnest")
        matched = match_keys(info, rows[0]) if ignore_conflicts else []
        statement = _unnest_insert(table, keys, info.column_keys[info.pk_attr], matched)
        if ignore_conflicts:
            statement = statement.on_conflict_do_nothing()
        params = {f"p{i}": arrays[key] for i, key in enumerate(keys)}
        returned = [tuple(r) for r in await session.execute(statement, params)]
        return align_returned(info, rows, returned, matched, pk_known=pk_known)

    async def upsert(
        self, session: AsyncSession, info: ModelInfo, rows: Seq[Row], plan: UpsertPlan
    ) -> list[tuple[Any, Outcome]]:
        """Rows of one key set in one ``INSERT ... ON CONFLICT (keys) DO UPDATE ... WHERE
        (columns) IS DISTINCT FROM excluded`` (arrays, or executemany for tables the arrays
        cannot serve): atomic per row against other writers. RETURNING gives the inserted
        (``xmax = 0``) and updated rows; the others held their values already and are found by
        their keys (ON CONFLICT locked them, so they stay as read until the unit ends)."""
        table = info.table
        pk = table.c[info.column_keys[info.pk_attr]]
        given = list(rows[0])
        columns = plan.updated_columns(given)
        defaults = self._python_defaults(info)
        params: Any
        if defaults is None:
            note_strategy("executemany_on_conflict")
            statement = postgresql.insert(table)
            params = list(rows)
        else:
            note_strategy("unnest_on_conflict")
            filled = [key for key in defaults if key not in rows[0]]
            arrays = [list(map(itemgetter(key), rows)) for key in given]
            arrays += [defaults[key](len(rows)) for key in filled]
            statement = _unnest_rows(table, given + filled, ordered=False)
            params = {f"p{i}": array for i, array in enumerate(arrays)}
        targets = [table.c[key] for key in plan.unique_keys]
        if columns:
            excluded = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=targets,
                set_={**plan.stamps, **{key: excluded[key] for key in columns}},
                where=or_(*(differs(table.c[key], excluded[key]) for key in columns)),
            )
        else:  # nothing to update: an existing row is unchanged by definition
            statement = statement.on_conflict_do_nothing(index_elements=targets)
        returned = (
            await session.execute(statement.returning(pk, _INSERTED, *targets), params)
        ).all()  # fetchall: a row at a time through the result costs as much as the statement
        created, updated = Outcome.CREATED, Outcome.UPDATED
        done = {tuple(r[2:]): (r[0], created if r[1] else updated) for r in returned}
        if len(targets) == 1:
            keys: list[tuple[Any, ...]] = [(v,) for v in map(itemgetter(plan.unique_keys[0]), rows)]
        else:
            keys = [plan.key_of(row) for row in rows]
        missing = [key for key in keys if key not in done]
        if missing:
            found = await existing_keys(session, info, plan, missing, self.max_parameters)
            for key, (pk_value,) in found.items():
                done[key] = (pk_value, Outcome.UNCHANGED)
        return [done[key] for key in keys]

    async def _by_copy(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: list[Row],
        keys: list[str],
        arrays: dict[str, Any],
        ignore_conflicts: bool,
        pool: KeyPool | None,
    ) -> list[Any | None] | None:
        """Ids of the group written some faster way than the array statement, or None (a
        driver with COPY overrides it)."""
        return None

    def _python_defaults(self, info: ModelInfo) -> dict[str, ArrayMaker] | None:
        """Column key -> value maker, or None when this table needs the fallback."""
        table = info.table
        if table not in self._defaults:
            self._defaults[table] = _defaults_or_none(table)
        return self._defaults[table]

    def change_batch_size(self, batch_size: int, *, deleting: bool) -> int:
        return batch_size  # the batch is chosen by a subquery: no key is a parameter

    def tries_whole_call(self, *, deleting: bool) -> bool:
        return True

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
        note_strategy("whole" if whole else "range")
        pk = target.pk
        if whole:
            # Counted in any order, as the planner finds cheapest; the change runs only when
            # every match fits (a one-time filter), and is then the plain statement.
            matches = select(pk).where(condition).limit(size).subquery("baserepo_chosen")
            batch = select(func.count().label("seen")).select_from(matches).cte("baserepo_batch")
            where = and_(condition, select(batch.c.seen).scalar_subquery() < size)
        else:
            above = condition if last is None else and_(condition, pk > last)
            chosen = select(pk.label("key")).where(above).order_by(pk).limit(size)
            rows = chosen.subquery("baserepo_chosen")
            batch = select(func.count().label("seen"), func.max(rows.c.key).label("bound")).cte(
                "baserepo_batch"
            )
            # In the statement's snapshot these are exactly the chosen rows; a row changed by
            # another transaction meanwhile is re-checked on its newest version by key and
            # condition, both of which survive an update (a ctid would not).
            where = and_(above, pk <= select(batch.c.bound).scalar_subquery())
        changed = (
            change_statement(target.table, where, values)
            .returning(pk.label("key"))
            .cte("baserepo_changed")
        )
        statement = select(
            batch.c.seen, select(func.array_agg(changed.c.key)).scalar_subquery()
        ).select_from(batch)
        count, keys = (await session.execute(statement)).one()
        ids = sorted(keys or ())
        if whole:
            # Either every match was changed, or (more than ``size`` of them) none was.
            return ChangeBatch(ids, None, count >= size)
        return ChangeBatch(ids, ids[-1] if ids else last, count >= size)

    def rows_per_update(
        self, target: ChangeTarget, columns: Seq[str], batch_size: int | None
    ) -> int:
        if not _arrays_fit(target, columns):
            return case_rows_per_update(self.max_parameters, columns, batch_size)
        return min(batch_size or self.default_batch_size, MAX_ARRAY_ROWS)

    async def update_rows(
        self,
        session: AsyncSession,
        target: ChangeTarget,
        condition: ColumnElement[bool],
        keys: list[Any],
        columns: Mapping[str, list[Any]],
        common: Mapping[str, Any],
    ) -> list[Any]:
        if not _arrays_fit(target, list(columns)):
            return await case_update_rows(
                session, target, condition, keys, columns, common, returning=True
            )
        note_strategy("unnest")
        statement = _unnest_update(target, condition, list(columns), common)
        parameters = {"baserepo_k": keys} | {
            f"baserepo_p{i}": values for i, values in enumerate(columns.values())
        }
        return list((await session.execute(statement, parameters)).scalars())


def differs(stored: Column[Any], given: ColumnElement[Any]) -> ColumnElement[bool]:
    """``stored IS DISTINCT FROM given``; ``json`` has no equality operator (``jsonb`` has), so
    it is compared as its text, which is how SQLAlchemy serialised it on both sides."""
    kind = getattr(stored.type, "impl", stored.type)
    if isinstance(kind, types.JSON) and not isinstance(kind, postgresql.JSONB):
        return cast(stored, types.Text).is_distinct_from(cast(given, types.Text))
    return stored.is_distinct_from(given)


def _defaults_or_none(table: Table) -> dict[str, ArrayMaker] | None:
    makers: dict[str, ArrayMaker] = {}
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


def _maker(arg: Any, *, callable_: bool) -> ArrayMaker:
    if callable_:
        # Called once per row, as SQLAlchemy does (uuid4 must differ row to row).
        return lambda n: [arg(None) for _ in range(n)]
    return lambda n: [arg] * n


def _unnest_insert(table: Table, keys: list[str], pk_key: str, matched: list[str]) -> Any:
    returning = [table.c[pk_key], *(table.c[k] for k in matched)]
    return _unnest_rows(table, keys).returning(*returning)


def _unnest_rows(table: Table, keys: list[str], *, ordered: bool = True) -> postgresql.Insert:
    """``INSERT ... SELECT`` from one array per column; ``ordered``: keys drawn in row order
    (an upsert matches rows back by their unique key and skips the sort)."""
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
    rows = select(*(source.c[key] for key in keys))
    if ordered:
        rows = rows.order_by(source.c.baserepo_ord)
    return postgresql.insert(table).from_select(keys, rows, include_defaults=False)


def _arrays_fit(target: ChangeTarget, columns: Seq[str]) -> bool:
    """The key and every written column can travel as one array (``ColumnKind.pg_bulk``)."""
    types = [target.pk.type, *(target.table.c[name].type for name in columns)]
    return all(kind_of(sql_type, "postgresql").pg_bulk for sql_type in types)


def _unnest_update(
    target: ChangeTarget,
    condition: ColumnElement[bool],
    columns: list[str],
    common: Mapping[str, Any],
) -> Any:
    """``UPDATE t SET c = src.v0 ... FROM unnest($k::key[], $p0::c[], ...) AS src(k, v0, ...)
    WHERE t.pk = src.k AND condition RETURNING t.pk``: N arrays, whatever the row count."""
    table, pk = target.table, target.pk
    typed = [
        (pk.type, "baserepo_k"),
        *((table.c[name].type, f"baserepo_p{i}") for i, name in enumerate(columns)),
    ]
    arrays = [
        cast(bindparam(param, type_=postgresql.ARRAY(t)), postgresql.ARRAY(t)) for t, param in typed
    ]
    names = ["k", *(f"v{i}" for i in range(len(columns)))]
    source = func.unnest(*arrays).table_valued(*names, name="baserepo_src").render_derived()
    values: dict[str, Any] = dict(common)
    values.update({name: source.c[f"v{i}"] for i, name in enumerate(columns)})
    return update(table).where(pk == source.c.k, condition).values(values).returning(pk)


# Read replicas (_replicas): the primary's position is read as text so that no driver's
# pg_lsn codec is relied on, and compared on the replica from text for the same reason. A
# SELECT, not text(): session listeners take any other statement for a possible write. A
# server that is not replaying gives NULL for its replay position: it cannot vouch for any
# write, so the answer is False and the read goes to the primary.
_REPLAYED_WAL = text(
    "SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:position AS text) AS pg_lsn), false)"
)

register_wal_positions(
    "postgresql",
    WalPositions(
        current=lambda: select(cast(func.pg_current_wal_lsn(), postgresql.TEXT)),
        replayed=lambda position: _REPLAYED_WAL.bindparams(position=position),
    ),
)
