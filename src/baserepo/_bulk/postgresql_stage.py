"""bulk_upsert on PostgreSQL from a staging table: the statement, and how its rows are read.

The asyncpg dialect COPYs a batch into a temporary table of its own (``ON COMMIT DROP``,
emptied at the start of every batch) and then runs one statement, in one snapshot:

    WITH updated AS (UPDATE t SET ... FROM stage s WHERE t.key = s.key
                     AND (t.c IS DISTINCT FROM s.c OR ...) RETURNING t.id, t.key),
         inserted AS (INSERT INTO t (...) SELECT ... FROM stage s
                      WHERE NOT EXISTS (SELECT FROM t WHERE t.key = s.key) RETURNING id, key)
    SELECT * FROM (SELECT array_agg(id), array_agg(key) FROM updated) AS u,
                  (SELECT array_agg(id), array_agg(key) FROM inserted) AS c

The one snapshot decides which keys exist: a staged row is updated, inserted, or (neither)
held its values already. Those unchanged rows are then read by key with ``FOR UPDATE`` (as
``ON CONFLICT`` would have locked them); one deleted meanwhile is not found and is written
again by the ``ON CONFLICT`` statement. This is cheaper than ``INSERT ... ON CONFLICT DO
UPDATE`` (whose speculative insertion costs per row), and COPY is cheaper than sending arrays
(docs/performance.md, "bulk_upsert"). A key another transaction inserted after the snapshot
makes the INSERT fail with a unique violation: the statement runs in a SAVEPOINT, and the
batch is then written by the ``ON CONFLICT`` statement, which decides per row.

Rows are matched back by their unique key, never by position: RETURNING promises no order.
"""

from __future__ import annotations

import hashlib
from itertools import repeat
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Select,
    and_,
    column,
    exists,
    func,
    or_,
    select,
    table,
    true,
)
from sqlalchemy.dialects import postgresql

from ._upsert import Outcome
from .postgresql import differs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table, TableClause
    from sqlalchemy.ext.asyncio import AsyncSession

    from ._upsert import UpsertPlan

__all__ = ["Stage", "Stages", "read_outcomes"]

_MAX_STAGES = 64
"""Shapes (target, columns) kept per dialect: a bound, not an LRU; they rarely number that many."""


class Stage:
    """The staging table of one target and one set of columns, and the statement that moves a
    batch from it into the target."""

    def __init__(self, target: Table, keys: Sequence[str], quote: Any, qualified: str) -> None:
        self.keys = list(keys)
        self.names = [target.c[key].name for key in keys]
        digest = hashlib.blake2b(
            "\0".join([qualified, "upsert", *self.names]).encode(), digest_size=8
        ).hexdigest()
        self.name = f"baserepo_upsert_{digest}"
        self.table: TableClause = table(
            self.name, *(column(target.c[key].name, target.c[key].type) for key in keys)
        )
        quoted = ", ".join(quote(name) for name in self.names)
        # One simple-query round trip, no prepared statement (PgBouncer): made once per
        # transaction (ON COMMIT DROP: never left on a pooled server connection, always of the
        # target's current types), emptied per batch (a batch rolled back to its SAVEPOINT
        # takes its TRUNCATE back with it, so the next batch empties it again).
        self.reset_sql = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(self.name)} ON COMMIT DROP AS "
            f"SELECT {quoted} FROM {qualified} WITH NO DATA; TRUNCATE {quote(self.name)}"
        )

    def statement(
        self, target: Table, pk_key: str, plan: UpsertPlan, given: Sequence[str]
    ) -> Select[Any]:
        """The one statement of a batch: one row, the updated rows' ids and unique keys as
        arrays, then the inserted rows'."""
        stage = self.table.c
        of = dict(zip(self.keys, self.names, strict=True))
        # What the records give, not the defaults filled in for new rows.
        columns = plan.updated_columns(given)
        pk = target.c[pk_key]
        targets = [target.c[key] for key in plan.unique_keys]
        match = and_(*(target.c[key] == stage[of[key]] for key in plan.unique_keys))
        changed = or_(*(differs(target.c[key], stage[of[key]]) for key in columns))
        updated = (
            target.update()
            .where(match, changed)
            .values({**plan.stamps, **{key: stage[of[key]] for key in columns}})
            .returning(pk, *targets)
            .cte("baserepo_updated")
        )
        new_rows = select(*(stage[name] for name in self.names)).where(~exists().where(match))
        inserted = (
            postgresql.insert(target)
            .from_select(self.keys, new_rows, include_defaults=False)
            .returning(pk, *targets)
            .cte("baserepo_inserted")
        )
        # One row of arrays (ids, then each key column, per part): no row object per record
        # to make and collect. The aggregates of one query walk the same rows: aligned.
        parts = [
            select(*(func.array_agg(value) for value in part.c)).subquery(name)
            for part, name in ((updated, "baserepo_u"), (inserted, "baserepo_c"))
        ]
        both = parts[0].join(parts[1], true())  # one row each: a join of two rows
        return select(*parts[0].c, *parts[1].c).select_from(both)


class Stages:
    """The stages met so far, one per target and set of columns."""

    def __init__(self) -> None:
        self._known: dict[tuple[Table, tuple[str, ...]], Stage] = {}

    def of(self, session: AsyncSession, table: Table, keys: list[str]) -> Stage:
        found = self._known.get((table, tuple(keys)))
        if found is None:
            preparer = session.sync_session.get_bind().dialect.identifier_preparer
            found = Stage(table, keys, preparer.quote, preparer.format_table(table))
            if len(self._known) >= _MAX_STAGES:
                self._known.clear()
            self._known[(table, tuple(keys))] = found
        return found


def read_outcomes(
    returned: Sequence[Any], width: int, keys: Sequence[Any]
) -> tuple[list[tuple[Any, Outcome] | None], list[int]]:
    """Outcomes aligned with ``keys`` (a value per row for one key column, else tuples),
    matched by key, and the offsets of the keys that neither part returned."""
    done: dict[Any, tuple[Any, Outcome]] = {}
    for start, outcome in ((0, Outcome.UPDATED), (1 + width, Outcome.CREATED)):
        ids = returned[start] or []  # array_agg of no rows is NULL
        columns = returned[start + 1 : start + 1 + width]
        found = (columns[0] or []) if width == 1 else zip(*(c or [] for c in columns), strict=True)
        # The aggregates of one query are aligned: as many keys as ids.
        done.update(zip(found, zip(ids, repeat(outcome)), strict=True))
    outcomes = list(map(done.get, keys))
    missing = [offset for offset, outcome in enumerate(outcomes) if outcome is None]
    return outcomes, missing
