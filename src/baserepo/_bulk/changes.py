"""bulk_update / bulk_delete: change every row matching a condition, one atomic batch at a time.

Keyset pagination on the primary key visits every matching row once, even when the change
itself makes a row stop matching (``is_active=True`` -> ``False``) or keeps it matching: a
batch takes the next ``size`` matching keys above the last key of the previous batch, so no key
is looked at twice. Each batch is one unit of work (``_transactions.atomic``): a SAVEPOINT
inside the caller's transaction, otherwise a transaction of its own that is committed before
the next batch.

How a batch is chosen and changed depends on the database (docs/performance.md has the
measurements behind each choice). On every database a batch changes exactly what a plain
``UPDATE/DELETE ... WHERE <condition>`` would change among its rows, also under concurrent
writers: rows are reached by key and the condition is part of the change, so a row another
transaction changed meanwhile is re-checked on its newest version (PostgreSQL's re-check
after a lock wait at READ COMMITTED; MariaDB's locking reads) and changed if it still matches.

- PostgreSQL: one statement per batch. The first batch of a call counts (up to ``n``) the
  matching rows and, when there are fewer than ``n``, is the plain statement itself, guarded
  by that count: most calls need nothing else and cost what the single statement costs.
  Otherwise batches go in key order: a subquery chooses the next ``n`` matching keys above
  the last batch (``pk > last ORDER BY pk LIMIT n``) and gives their count and last key
  ``bound``; the change targets ``pk > last AND pk <= bound AND <condition>``, which are
  exactly the chosen rows in the statement's snapshot, and hands its keys back as one array.
  Whether more batches follow is decided on the chosen rows, not on the changed ones. (Rows
  are not reached by ``ctid``: a row updated by another transaction while the batch waited
  for its lock has a new ``ctid``, and the re-check would silently skip it.)
- Other databases with ``RETURNING`` and ``LIMIT`` in a subquery (SQLite): one statement,
  ``... WHERE pk IN (SELECT pk ... ORDER BY pk LIMIT n) RETURNING pk``; the statement is atomic
  against other writers, so a batch that returns fewer than ``n`` keys was the last.
- MySQL/MariaDB (no ``LIMIT`` in such a subquery, no ``UPDATE ... RETURNING``): the keys are
  selected and locked (``FOR UPDATE``, a locking read that sees each row's newest committed
  version, after waiting for its lock), then changed by key; fewer than ``n`` keys: last batch.

A batch that fails transiently (deadlock, serialization failure, busy database) is run again
as ``_retry`` says; inside the caller's transaction that raises ``TransactionRetryError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._transactions import atomic
from ._guards import refuse_autocommit, retiring_broken_connection
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy, is_transient
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

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        strategy: InsertStrategy,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._session = session
        self._info = info
        self._strategy = strategy
        self._retry = retry
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
        soft delete whose condition requires the row not to be deleted yet). Batches are
        chosen the same way either way; it says which operation this is.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        await refuse_autocommit(self._session, self._info.model)
        dialect = self._session.sync_session.get_bind().dialect
        returning = dialect.delete_returning if values is None else dialect.update_returning
        if returning and dialect.name == "postgresql":
            step, size = self._range_batch, batch_size
        elif returning and self._strategy.limited_subquery_changes:
            step, size = self._subquery_batch, batch_size
        else:
            # The keys travel as bind parameters of the change: clamp to the dialect's limit.
            step, size = self._keys_batch, min(batch_size, self._strategy.max_parameters)
        tally = _Tally()
        operation = "bulk_delete" if values is None or stops_matching else "bulk_update"
        last: Any = None
        # Most calls fit in one batch, which then is the plain statement (PostgreSQL).
        whole = step == self._range_batch
        more = True
        attempts = BatchAttempts(self._retry, self._session)
        while more:
            batch: _Batch | None = None
            try:
                async with atomic(self._session), retiring_broken_connection(self._session):
                    batch = await step(condition, values, size, last, whole)
                    if batch.ids and on_batch is not None:
                        on_batch(batch.ids, [values] if values else [])
            except sa_exc.SQLAlchemyError as error:
                if await attempts.again(error):
                    continue
                tries, attempts = attempts.tries, BatchAttempts(self._retry, self._session)
                if whole and not is_unavailable(error):
                    # Nothing of the whole-call attempt stands: go on in key order, where a
                    # failing batch is told apart from the others and reported with its keys.
                    whole = False
                    continue
                ids: list[Any] = []
                if batch is not None and batch.ids:
                    ids = batch.ids  # the change went through; the commit (or RELEASE) did not
                elif not is_unavailable(error):
                    ids = await self._keys_of(self._next_keys(condition, size, last), error)
                if not ids and not is_unavailable(error):
                    if is_transient(error):
                        # Its rows have stopped matching meanwhile: nothing is left to change
                        # and no row to report.
                        break
                    raise translate(error) from error  # no row to blame: the statement's fault
                if not ids:
                    if tally.success_count == 0 and not tally.failures:
                        raise translate(error) from error
                    tally.fail(_batch_failure((), error, "could not select the next batch"))
                    if is_unavailable(error):
                        raise _stopped(
                            operation, tally, "the connection to the database failed"
                        ) from (translate(error))
                    break
                spent = f" after {tries} tries" if tries > 1 else ""
                tally.fail(_batch_failure(tuple(ids), error, f"batch rolled back{spent}"))
                if is_unavailable(error):  # nothing more can be done on this connection
                    raise _stopped(operation, tally, "the connection to the database failed") from (
                        translate(error)
                    )
                last, more = ids[-1], len(ids) >= size
            else:
                attempts = BatchAttempts(self._retry, self._session)
                tally.success_count += len(batch.ids)
                tally.affected_ids.extend(batch.ids)
                last, more, whole = batch.last, batch.more, False
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
        return tally.result()

    def _next_keys(self, condition: ColumnElement[bool], size: int, last: Any) -> Select[Any]:
        """The keys of the next batch, in key order."""
        query = select(self._pk).where(condition).order_by(self._pk).limit(size)
        return query if last is None else query.where(self._pk > last)

    def _change(self, target: ColumnElement[bool], values: Row | None) -> Any:
        if values is None:
            return delete(self._table).where(target)
        return update(self._table).where(target).values(values)

    async def _range_batch(
        self,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        whole: bool,
    ) -> _Batch:
        pk = self._pk
        if whole:
            # Counted in any order, as the planner finds cheapest; the change runs only when
            # every match fits (a one-time filter), and is then the plain statement.
            matches = select(pk).where(condition).limit(size).subquery("baserepo_chosen")
            batch = select(func.count().label("seen")).select_from(matches).cte("baserepo_batch")
            target = and_(condition, select(batch.c.seen).scalar_subquery() < size)
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
            target = and_(above, pk <= select(batch.c.bound).scalar_subquery())
        changed = self._change(target, values).returning(pk.label("key")).cte("baserepo_changed")
        statement = select(
            batch.c.seen, select(func.array_agg(changed.c.key)).scalar_subquery()
        ).select_from(batch)
        count, keys = (await self._session.execute(statement)).one()
        ids = sorted(keys or ())
        if whole:
            # Either every match was changed, or (more than ``size`` of them) none was.
            return _Batch(ids, None, count >= size)
        return _Batch(ids, ids[-1] if ids else last, count >= size)

    async def _subquery_batch(
        self,
        condition: ColumnElement[bool],
        values: Row | None,
        size: int,
        last: Any,
        whole: bool,
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
        whole: bool,
    ) -> _Batch:
        # A locking read: it waits for rows other transactions hold and then sees their
        # newest committed version, so the keys are those matching now, and stay locked.
        query = self._next_keys(condition, size, last).with_for_update()
        ids = list((await self._session.execute(query)).scalars())
        if ids:
            await self._session.execute(self._change(self._pk.in_(ids), values))
        return _Batch(ids, ids[-1] if ids else last, len(ids) >= size)

    async def _keys_of(self, query: Select[Any], failure: sa_exc.SQLAlchemyError) -> list[Any]:
        """The keys a failed batch held, to report them and move past them.

        Raises (translated) ``failure`` when they cannot be read: no failure is reported
        without the rows it concerns.
        """
        attempts = BatchAttempts(self._retry, self._session)
        while True:
            try:
                async with atomic(self._session):
                    return list((await self._session.execute(query)).scalars())
            except sa_exc.SQLAlchemyError as error:
                if await attempts.again(error):
                    continue
                raise translate(failure) from failure


def _batch_failure(ids: tuple[Any, ...], error: BaseException, what: str) -> RecordFailure:
    kind = FailureKind.UNAVAILABLE if is_unavailable(error) else failure_kind(error)
    return RecordFailure(
        None,
        kind,
        f"{what} ({len(ids)} rows, ids {ids[:5]}...): {database_message(error)}",
        ids=ids,
    )
