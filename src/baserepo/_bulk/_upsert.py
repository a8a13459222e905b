"""Upserting one batch: the plan every bulk dialect is given, and the portable way to run it.

A dialect's ``upsert`` gets rows that all carry the same columns and distinct unique keys (the
loop in ``upserts`` removed the input's duplicates), and answers, aligned with the rows, each
row's key and whether it was created, updated or found unchanged. Unchanged rows are never
written: no statement touches them, so no trigger, ``onupdate`` stamp or event follows.

``read_then_write`` is the portable way, for a database whose conflict clause cannot tell the
three outcomes apart per row: the existing rows of the batch's keys are read with a locking
read (``FOR UPDATE``; SQLite has none and needs none: it serialises writers, and a write
transaction whose snapshot went stale fails with "database is locked", a transient error the
batch is retried on), compared with the input in Python, and then the new rows are inserted
by the dialect's own bulk insert and the changed ones updated by key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, select, tuple_, update

from .._telemetry import note_strategy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement, Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row

__all__ = ["Outcome", "UpsertPlan", "existing_keys", "key_condition", "read_then_write"]

Key = tuple[Any, ...]


class Inserter(Protocol):
    """What ``read_then_write`` needs of a bulk dialect (``dialect.BulkDialect`` has it; named
    apart so that the protocol, which mentions this module, is not imported back)."""

    max_parameters: int

    async def insert(
        self, session: AsyncSession, info: ModelInfo, rows: Sequence[Row], *, ignore_conflicts: bool
    ) -> list[Any | None]: ...


class Outcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class UpsertPlan:
    """What one bulk_upsert call writes, by column key."""

    unique_keys: tuple[str, ...]
    """The columns of the unique constraint (or primary key) rows are matched on."""
    update_keys: tuple[str, ...] | None
    """Columns an existing row gets from its record; None: every given column but the keys."""
    stamps: Row
    """``onupdate`` values (an ``updated_at``) set on updated rows only, computed once."""

    def updated_columns(self, given: Sequence[str]) -> list[str]:
        """The columns written to an existing row of a group of rows giving ``given``."""
        if self.update_keys is None:
            return [k for k in given if k not in self.unique_keys]
        return [k for k in self.update_keys if k in given]

    def key_of(self, row: Row) -> Key:
        return tuple([row[k] for k in self.unique_keys])


def key_condition(table: Table, plan: UpsertPlan, keys: Sequence[Key]) -> ColumnElement[bool]:
    if len(plan.unique_keys) == 1:
        return table.c[plan.unique_keys[0]].in_([key[0] for key in keys])
    return tuple_(*(table.c[k] for k in plan.unique_keys)).in_(keys)


async def existing_keys(
    session: AsyncSession,
    info: ModelInfo,
    plan: UpsertPlan,
    keys: Sequence[Key],
    max_parameters: int,
    columns: Sequence[str] = (),
    *,
    lock: bool = False,
) -> dict[Key, tuple[Any, ...]]:
    """Unique key -> (primary key, *``columns``) of the existing rows among ``keys``."""
    table = info.table
    pk = table.c[info.column_keys[info.pk_attr]]
    width = len(plan.unique_keys)
    chunk = max(1, max_parameters // width)
    found: dict[Key, tuple[Any, ...]] = {}
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        query = select(
            pk, *(table.c[k] for k in plan.unique_keys), *(table.c[k] for k in columns)
        ).where(key_condition(table, plan, part))
        if lock:
            query = query.with_for_update()
        for row in await session.execute(query):
            found[tuple(row[1 : 1 + width])] = (row[0], *row[1 + width :])
    return found


async def read_then_write(
    dialect: Inserter,
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[Row],
    plan: UpsertPlan,
) -> list[tuple[Any, Outcome]]:
    """Rows of one key set: locking read, compare, insert the new, update the changed."""
    note_strategy("read_then_write")
    table = info.table
    given = list(rows[0])
    columns = plan.updated_columns(given)
    keys = [plan.key_of(row) for row in rows]
    existing = await existing_keys(
        session, info, plan, keys, dialect.max_parameters, columns, lock=True
    )
    outcomes: list[tuple[Any, Outcome] | None] = [None] * len(rows)
    new_rows: list[Row] = []
    new_at: list[int] = []
    changed: list[dict[str, Any]] = []
    for offset, (row, key) in enumerate(zip(rows, keys, strict=True)):
        found = existing.get(key)
        if found is None:
            new_rows.append(row)
            new_at.append(offset)
            continue
        pk_value, current = found[0], found[1:]
        wanted = tuple([row[k] for k in columns])
        if current == wanted:
            outcomes[offset] = (pk_value, Outcome.UNCHANGED)
            continue
        outcomes[offset] = (pk_value, Outcome.UPDATED)
        changed.append({"b_pk": pk_value, **{f"b_{k}": row[k] for k in columns}})
    if new_rows:
        ids = await dialect.insert(session, info, new_rows, ignore_conflicts=False)
        for offset, new_id in zip(new_at, ids, strict=True):
            outcomes[offset] = (new_id, Outcome.CREATED)
    if changed:
        pk = table.c[info.column_keys[info.pk_attr]]
        statement = (
            update(table)
            .where(pk == bindparam("b_pk"))
            .values({**plan.stamps, **{k: bindparam(f"b_{k}") for k in columns}})
        )
        # Executemany: one statement, the changed rows as parameter sets.
        await session.execute(statement, changed)
    return [outcome for outcome in outcomes if outcome is not None]
