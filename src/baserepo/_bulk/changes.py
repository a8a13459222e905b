"""bulk_update / bulk_delete: change every row matching a condition, one atomic batch at a time.

Keyset pagination on the primary key visits every matching row once, even when the change
itself makes a row stop matching (``is_active=True`` -> ``False``) or keeps it matching: a
batch takes the next ``size`` matching keys above the last key of the previous batch, so no key
is looked at twice. Each batch is one unit of work (``_transactions.atomic``): a SAVEPOINT
inside the caller's transaction, otherwise a transaction of its own that is committed before
the next batch.

How a batch is chosen and changed depends on the database (docs/performance.md has the
measurements behind each choice):

- PostgreSQL: one statement per batch. A subquery chooses the batch (the next ``n`` matching
  keys, in key order) and aggregates it in one pass into its size, its last key and its rows'
  ``ctid``s; the change reaches those rows by ``ctid`` (a TID scan: the table is not searched
  a second time) and its keys come back as one array. The change repeats the condition, so a
  row changed meanwhile by another transaction is re-checked, as in any ``UPDATE ... WHERE``;
  whether more batches follow is decided on the chosen rows, not on the changed ones. A
  change after which a row no longer matches (a delete) starts with an unordered batch: the
  planner then scans the table as it would for the single statement, and most calls need no
  other batch.
- Other databases with ``RETURNING`` and ``LIMIT`` in a subquery (SQLite): one statement,
  ``... WHERE pk IN (SELECT pk ... ORDER BY pk LIMIT n) RETURNING pk``; the statement is atomic
  against other writers, so a batch that returns fewer than ``n`` keys was the last.
- MySQL/MariaDB (no ``LIMIT`` in such a subquery, no ``UPDATE ... RETURNING``): the keys are
  selected and locked (``FOR UPDATE``), then changed by key; fewer than ``n`` keys: last batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    and_,
    any_,
    cast,
    delete,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import UserDefinedType

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._transactions import atomic
from ._guards import refuse_autocommit, retiring_broken_connection
from .engine import BatchCommitted, ProgressCallback, _report, _stopped, _Tally

if TYPE_CHECKING:
    from sqlalchemy import Column, Select, Table
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import InsertStrategy, Row

__all__ = ["BulkChanges"]


@dataclass(frozen=True, slots=True)
class _Batch:
    ids: list[Any]
    """Keys changed, in key order."""
    last: Any
    """The batch's last key: the next batch starts above it."""
    more: bool
    """Matching rows may remain above ``last``."""


class BulkChanges:
    """Runs bulk update/delete by condition for one model on one session."""

    def __init__(self, session: AsyncSession, info: ModelInfo, strategy: InsertStrategy) -> None:
        self._session = session
        self._info = info
        self._strategy = strategy
        self._table: Table = info.table
        self._pk: Column[Any] = info.table.c[info.column_keys[info.pk_attr]]

    async def change_where(
        self,
        condition: ColumnElement[bool],
        *,
        values: Row | None,
        batch_size: int,
        on_batch: BatchCommitted | None,
        progress: ProgressCallback | None,
        stops_matching: bool = False,
    ) -> BulkOperationResult:
        """Update (``values``) or hard-delete (``values=None``) the rows matching ``condition``.

        ``stops_matching``: a changed row no longer matches ``condition`` (a hard delete, or a
        soft delete whose condition requires the row not to be deleted yet). Such a change
        can never reach a row twice, so on PostgreSQL its first batch takes any ``batch_size``
        matching rows, in whatever order the planner finds cheapest, instead of the lowest keys.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        await refuse_autocommit(self._session, self._info.model)
        dialect = self._session.sync_session.get_bind().dialect
        returning = dialect.delete_returning if values is None else dialect.update_returning
        if returning and dialect.name == "postgresql":
            step, size = self._tid_batch, batch_size
        elif returning and self._strategy.limited_subquery_changes:
            step, size = self._subquery_batch, batch_size
        else:
            # The keys travel as bind parameters of the change: clamp to the dialect's limit.
            step, size = self._keys_batch, min(batch_size, self._strategy.max_parameters)
        tally = _Tally()
        operation = "bulk_delete" if values is None or stops_matching else "bulk_update"
        last: Any = None
        # Most calls fit in one batch, which then costs what one plain statement costs.
        ordered = not (stops_matching and step == self._tid_batch)
        more = True
        while more:
            batch: _Batch | None = None
            try:
                async with atomic(self._session), retiring_broken_connection(self._session):
                    batch = await step(condition, values, size, last, ordered)
                    if batch.ids and on_batch is not None:
                        on_batch(batch.ids, [values] if values else [])
            except sa_exc.SQLAlchemyError as error:
                if not ordered and not is_unavailable(error):
                    # Nothing of the unordered batch stands: start again in key order, where
                    # a failing batch is told apart from the others and reported with its keys.
                    ordered = True
                    continue
                ids: list[Any] = []
                if batch is None and not is_unavailable(error):
                    ids = await self._keys_of(self._next_keys(condition, size, last))
                elif batch is not None:
                    ids = batch.ids  # the change went through; the commit (or RELEASE) did not
                if not ids:
                    if tally.success_count == 0 and not tally.failures:
                        raise translate(error) from error
                    tally.fail(_batch_failure((), error, "could not select the next batch"))
                    if is_unavailable(error):
                        raise _stopped(
                            operation, tally, "the connection to the database failed"
                        ) from (translate(error))
                    break
                tally.fail(_batch_failure(tuple(ids), error, "batch rolled back"))
                if is_unavailable(error):  # nothing more can be done on this connection
                    raise _stopped(operation, tally, "the connection to the database failed") from (
                        translate(error)
                    )
                last, more = ids[-1], len(ids) >= size
            else:
                tally.success_count += len(batch.ids)
                tally.affected_ids.extend(batch.ids)
                last, more, ordered = batch.last, batch.more, True
                if not batch.ids:
                    continue
            # Rows handled, not batches: a failed batch counts every row it held.
            try:
                await _report(
                    progress, tally.success_count + sum(len(f.ids) for f in tally.failures)
                )
            except Exception as error:
                why = f"the progress callback raised {type(error).__name__}: {error}"
                raise _stopped(operation, tally, why) from error
        if stops_matching:
            # An unordered first batch may hold keys above those of later batches.
            tally.affected_ids.sort()
        return tally.result()

    def _next_keys(self, condition: ColumnElement[bool], size: int, last: Any) -> Select[Any]:
        """The keys of the next batch, in key order."""
        query = select(self._pk).where(condition).order_by(self._pk).limit(size)
        return query if last is None else query.where(self._pk > last)

    def _change(self, target: ColumnElement[bool], values: Row | None) -> Any:
        if values is None:
            return delete(self._table).where(target)
        return update(self._table).where(target).values(values)

    async def _tid_batch(
        self,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        ordered: bool,
    ) -> _Batch:
        pk = self._pk
        ctid: ColumnElement[Any] = literal_column("ctid")
        chosen = select(ctid.label("tid"), pk.label("key"))
        if ordered:
            above = condition if last is None else and_(condition, pk > last)
            chosen = chosen.where(above).order_by(pk)
        else:
            chosen = chosen.where(condition)
        rows = chosen.limit(size).subquery("baserepo_chosen")
        # One pass over the chosen rows: how many, the last key, their ctids.
        batch = select(
            func.count().label("seen"),
            func.max(rows.c.key).label("bound"),
            func.array_agg(rows.c.tid).label("tids"),
        ).cte("baserepo_batch")
        # ANY (CAST((SELECT tids ...) AS TID[])): the array, not ANY over a subquery's rows.
        tids = cast(select(batch.c.tids).scalar_subquery(), ARRAY(_Tid()))
        target = and_(ctid == any_(tids), condition)
        if ordered:
            # A ctid is unique only within one table: on a partitioned (or inherited) table
            # the key range keeps the change to this batch (an unordered batch only deletes,
            # and a row deleted early is still deleted once). Wrapped in IS TRUE so that the
            # planner cannot take it for an index range and must reach the rows by ctid.
            bound = select(batch.c.bound).scalar_subquery()
            within = pk <= bound if last is None else and_(pk > last, pk <= bound)
            target = and_(target, within.is_(true()))
        changed = self._change(target, values).returning(pk.label("key")).cte("baserepo_changed")
        statement = select(
            batch.c.seen, batch.c.bound, select(func.array_agg(changed.c.key)).scalar_subquery()
        ).select_from(batch)
        count, bound, keys = (await self._session.execute(statement)).one()
        return _Batch(sorted(keys or ()), bound if ordered else None, count >= size)

    async def _subquery_batch(
        self,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        ordered: bool,
    ) -> _Batch:
        # The statement is atomic against other writers on these databases (SQLite locks the
        # whole database), so it changes exactly the keys its subquery chose.
        target = self._pk.in_(self._next_keys(condition, size, last).with_for_update())
        result = await self._session.execute(self._change(target, values).returning(self._pk))
        ids = sorted(result.scalars())
        return _Batch(ids, ids[-1] if ids else last, len(ids) >= size)

    async def _keys_batch(
        self,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        ordered: bool,
    ) -> _Batch:
        query = self._next_keys(condition, size, last).with_for_update()
        ids = list((await self._session.execute(query)).scalars())
        if ids:
            await self._session.execute(self._change(self._pk.in_(ids), values))
        return _Batch(ids, ids[-1] if ids else last, len(ids) >= size)

    async def _keys_of(self, query: Select[Any]) -> list[Any]:
        """The keys a failed batch held, to report them and move past them."""
        try:
            async with atomic(self._session):
                return list((await self._session.execute(query)).scalars())
        except sa_exc.SQLAlchemyError:
            return []


class _Tid(UserDefinedType[Any]):
    """PostgreSQL's ``tid`` (a row's ``ctid``), only ever cast to inside a statement."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TID"


def _batch_failure(ids: tuple[Any, ...], error: BaseException, what: str) -> RecordFailure:
    kind = FailureKind.UNAVAILABLE if is_unavailable(error) else failure_kind(error)
    return RecordFailure(
        None,
        kind,
        f"{what} ({len(ids)} rows, ids {ids[:5]}...): {database_message(error)}",
        ids=ids,
    )
