"""The one protocol every bulk dialect implements, and the statements any database can run.

A bulk dialect is chosen per (database, driver) and owns every statement of its database:
how a batch of rows is inserted with ids aligned to the input, and how a batch of
bulk_update/bulk_delete is chosen and changed. The loops (``creates``, ``changes``) never ask
which database they talk to; they ask the dialect. Limits and capabilities come from the
SQLAlchemy dialect (``insertmanyvalues_max_parameters``, ``update_returning``...), read once
when the bulk dialect is made for it.

The change statements here are the portable ones a dialect picks from:

- ``subquery_change``: ``UPDATE/DELETE ... WHERE pk IN (SELECT pk ... ORDER BY pk LIMIT n)
  RETURNING pk``, one statement, for a database whose statement is atomic against other
  writers and that takes ``LIMIT`` in such a subquery; a batch that returns fewer than ``n``
  keys was the last.
- ``keyed_change``: the keys are selected and locked (``FOR UPDATE``, a locking read that sees
  each row's newest committed version, after waiting for its lock), then changed by key; the
  keys travel as bind parameters, so the batch must fit the parameter limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sqlalchemy import ColumnElement, delete, select, update

from .._telemetry import note_strategy

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy import Column, Select, Table
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncEngine as AsyncEngine
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row
    from ._key_pool import KeyPool
    from ._upsert import Outcome, UpsertPlan

__all__ = [
    "BulkDialect",
    "ChangeBatch",
    "ChangeTarget",
    "change_statement",
    "keyed_change",
    "next_keys",
    "subquery_change",
]


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    ids: list[Any]
    """Keys changed, in key order."""
    last: Any
    """The batch's last key: the next batch starts above it."""
    more: bool
    """Matching rows may remain above ``last``."""


@dataclass(frozen=True, slots=True)
class ChangeTarget:
    """The table a bulk update/delete changes and its primary key column."""

    table: Table
    pk: Column[Any]


class BulkDialect(Protocol):
    """Every statement of one database (and driver) that the bulk loops run."""

    names: ClassVar[tuple[str, ...]]
    """SQLAlchemy dialect names (``Dialect.name``) this class serves."""
    driver: ClassVar[str | None]
    """The one driver (``Dialect.driver``) it serves, or None for any driver of its names."""
    requirement: ClassVar[str]
    """The database (and version) it needs, for the error a database without it gets."""

    db_system: str
    """OpenTelemetry's name of the database (the ``db.system`` attribute of spans)."""
    max_parameters: int
    """Bind parameters one statement may carry; batches are clamped to fit."""
    default_batch_size: int
    """Records per bulk_create batch when the caller gives no ``batch_size``."""

    def __init__(self, dialect: Dialect) -> None: ...

    @staticmethod
    def prepare_engine(engine: AsyncEngine) -> None:
        """What a new engine of this database needs before baserepo relies on it."""
        ...

    def rows_per_statement(self, info: ModelInfo) -> int:
        """Most rows one insert of this model can carry; batches are clamped to it."""
        ...

    async def insert(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: Sequence[Row],
        *,
        ignore_conflicts: bool,
        key_pool: KeyPool | None = None,
    ) -> list[Any | None]:
        """Ids aligned with ``rows`` (None: skipped as a conflict); ``key_pool``: where keys
        drawn from a sequence are taken from and given back (dialects that let the database
        draw them ignore it)."""
        ...

    async def upsert(
        self, session: AsyncSession, info: ModelInfo, rows: Sequence[Row], plan: UpsertPlan
    ) -> list[tuple[Any, Outcome]]:
        """Insert or update rows of one key set, distinct on ``plan.unique_keys``; each row's
        key and outcome, aligned with ``rows``. Unchanged rows are not written."""
        ...

    def change_batch_size(self, batch_size: int, *, deleting: bool) -> int:
        """The batch size bulk_update (``deleting`` False) or bulk_delete actually uses."""
        ...

    def tries_whole_call(self, *, deleting: bool) -> bool:
        """The first batch is tried as the plain statement over every matching row (it
        changes nothing when more than the batch size match); ``change`` gets ``whole``."""
        ...

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
        """Update (``values``) or delete (None) the next batch of ``size`` matching rows
        above key ``last``; exactly what ``UPDATE/DELETE ... WHERE condition`` would change
        among them, also under concurrent writers (rows reached by key, the condition part of
        the change, so a row changed meanwhile is re-checked on its newest version)."""
        ...

    def rows_per_update(
        self, target: ChangeTarget, columns: Sequence[str], batch_size: int | None
    ) -> int:
        """Rows of one bulk_update_rows statement writing ``columns`` (column keys);
        ``batch_size``: the caller's, None for the dialect's default."""
        ...

    async def update_rows(
        self,
        session: AsyncSession,
        target: ChangeTarget,
        condition: ColumnElement[bool],
        keys: list[Any],
        columns: Mapping[str, list[Any]],
        common: Mapping[str, Any],
    ) -> list[Any]:
        """One statement: each row of ``keys`` that matches ``condition`` gets its own values
        of ``columns`` (aligned with ``keys``, distinct) and ``common``; the keys it changed."""
        ...


def next_keys(pk: Column[Any], condition: ColumnElement[bool], size: int, last: Any) -> Select[Any]:
    """The keys of the next batch, in key order."""
    query = select(pk).where(condition).order_by(pk).limit(size)
    return query if last is None else query.where(pk > last)


def change_statement(table: Table, where: ColumnElement[bool], values: Row | None) -> Any:
    if values is None:
        return delete(table).where(where)
    return update(table).where(where).values(values)


async def subquery_change(
    session: AsyncSession,
    target: ChangeTarget,
    condition: ColumnElement[bool],
    values: Row | None,
    size: int,
    last: Any,
) -> ChangeBatch:
    """One statement; only for a database whose statement is atomic against other writers
    (it then changes exactly the keys its subquery chose)."""
    note_strategy("subquery")
    pk = target.pk
    chosen = pk.in_(next_keys(pk, condition, size, last).with_for_update())
    result = await session.execute(change_statement(target.table, chosen, values).returning(pk))
    ids = sorted(result.scalars())
    return ChangeBatch(ids, ids[-1] if ids else last, len(ids) >= size)


async def keyed_change(
    session: AsyncSession,
    target: ChangeTarget,
    condition: ColumnElement[bool],
    values: Row | None,
    size: int,
    last: Any,
) -> ChangeBatch:
    """The keys read and locked first, then changed by key (``size`` keys as parameters)."""
    # A locking read: it waits for rows other transactions hold and then sees their
    # newest committed version, so the keys are those matching now, and stay locked.
    note_strategy("keyed")
    pk = target.pk
    query = next_keys(pk, condition, size, last).with_for_update()
    ids = list((await session.execute(query)).scalars())
    if ids:
        await session.execute(change_statement(target.table, pk.in_(ids), values))
    return ChangeBatch(ids, ids[-1] if ids else last, len(ids) >= size)
