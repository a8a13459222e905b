"""bulk_update / bulk_delete: change every row matching a condition, one atomic batch at a time.

Keyset pagination on the primary key visits every matching row once, even when the change
itself makes a row stop matching (``is_active=True`` -> ``False``) or keeps it matching: a
batch takes the next ``size`` matching keys above the last key of the previous batch, so no key
is looked at twice. Each batch is one unit of work (``_transactions.atomic``): a SAVEPOINT
inside the caller's transaction, otherwise a transaction of its own that is committed before
the next batch.

How a batch is chosen and changed is the bulk dialect's (``dialect.BulkDialect.change``).
On every database a batch changes exactly what a plain ``UPDATE/DELETE ... WHERE
<condition>`` would change among its rows, also under concurrent writers: rows are reached by
key and the condition is part of the change, so a row another transaction changed meanwhile
is re-checked on its newest version and changed if it still matches. A dialect may try the
first batch as the plain statement over every matching row (``tries_whole_call``): when that
attempt fails, nothing of it stands and the call goes on in key order, where a failing batch
is told apart from the others and reported with its keys.

A batch that fails transiently (deadlock, serialization failure, busy database) is run again
as ``_retry`` says; inside the caller's transaction that raises ``TransactionRetryError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement
from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._telemetry import BulkCall, rolled_back
from .._transactions import atomic
from ._guards import refuse_autocommit, retiring_broken_connection
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy, is_transient
from .dialect import ChangeBatch, ChangeTarget, next_keys
from .tally import BatchCommitted, ProgressCallback, Tally, describe, report_progress, stopped

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import Row
    from .dialect import BulkDialect

__all__ = ["BulkChanges"]


class BulkChanges:
    """Runs bulk update/delete by condition for one model on one session."""

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        dialect: BulkDialect,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._session = session
        self._info = info
        self._dialect = dialect
        self._retry = retry
        self._target = ChangeTarget(info.table, info.table.c[info.column_keys[info.pk_attr]])

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
        dialect, deleting = self._dialect, values is None
        size = dialect.change_batch_size(batch_size, deleting=deleting)
        tally = Tally()
        operation = "bulk_delete" if values is None or stops_matching else "bulk_update"
        telemetry = BulkCall(operation, self._info.model.__name__, tally)
        try:
            last: Any = None
            whole = dialect.tries_whole_call(deleting=deleting)
            more = True
            attempts = BatchAttempts(self._retry, self._session)
            while more:
                with telemetry.batch(size) as current:
                    batch: ChangeBatch | None = None
                    try:
                        async with atomic(self._session), retiring_broken_connection(self._session):
                            batch = await dialect.change(
                                self._session, self._target, condition, values, size, last, whole
                            )
                            if batch.ids and on_batch is not None:
                                on_batch(batch.ids, [values] if values else [])
                    except sa_exc.SQLAlchemyError as error:
                        if await attempts.again(error):
                            current.outcome = "retried"
                            continue
                        tries, attempts = attempts.tries, BatchAttempts(self._retry, self._session)
                        if whole and not is_unavailable(error):
                            # Nothing of the whole-call attempt stands: go on in key order,
                            # where a failing batch is told apart from the others and reported
                            # with its keys.
                            whole = False
                            current.outcome = "retried"
                            continue
                        ids = await self._failed_batch_keys(batch, error, condition, size, last)
                        if not ids and is_transient(error) and not is_unavailable(error):
                            # Its rows have stopped matching meanwhile: nothing is left to
                            # change and no row to report.
                            break
                        current.rows = len(ids)
                        _record_failed_batch(operation, tally, ids, error, tries)
                        last, more = ids[-1], len(ids) >= size
                    else:
                        attempts = BatchAttempts(self._retry, self._session)
                        tally.success_count += len(batch.ids)
                        tally.affected_ids.extend(batch.ids)
                        current.rows = len(batch.ids)
                        last, more, whole = batch.last, batch.more, False
                        if not batch.ids:
                            continue
                # Rows handled, not batches: a failed batch counts every row it held.
                try:
                    await report_progress(
                        progress, tally.success_count + sum(len(f.ids) for f in tally.failures)
                    )
                except Exception as error:
                    raise stopped(
                        operation, tally, f"the progress callback raised {describe(error)}"
                    ) from error
            return tally.result()
        finally:
            telemetry.finish()  # also when the call stops midway

    async def _failed_batch_keys(
        self,
        batch: ChangeBatch | None,
        error: sa_exc.SQLAlchemyError,
        condition: ColumnElement[bool],
        size: int,
        last: Any,
    ) -> list[Any]:
        """The keys of the batch that failed: those it changed when only its commit (or
        RELEASE) failed; else the batch's keys read again, unless the connection is gone."""
        if batch is not None and batch.ids:
            return list(batch.ids)
        if is_unavailable(error):
            return []
        return await self._keys_of(next_keys(self._target.pk, condition, size, last), error)

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


def _record_failed_batch(
    operation: str, tally: Tally, ids: list[Any], error: sa_exc.SQLAlchemyError, tries: int
) -> None:
    """Count the rolled-back batch of ``ids`` in ``tally``; raise when the call cannot go on
    (the connection is gone, or the batch's rows could not even be named)."""
    if not ids:
        if tally.success_count == 0 and not tally.failures:
            raise translate(error) from error  # nothing written: no result to keep
        # Earlier batches committed: the caller gets them with the reason it stopped.
        tally.fail(_batch_failure((), error, "could not select the next batch"))
        why = (
            "the connection to the database failed"
            if is_unavailable(error)
            else f"a batch failed with no rows to report: {describe(error)}"
        )
        raise stopped(operation, tally, why) from translate(error)
    spent = f" after {tries} tries" if tries > 1 else ""
    tally.fail(_batch_failure(tuple(ids), error, f"batch rolled back{spent}"))
    rolled_back(
        f"{len(ids)} rows, keys {ids[0]!r} to {ids[-1]!r}",
        None,
        f"{database_message(error)}{spent}",
    )
    if is_unavailable(error):  # nothing more can be done on this connection
        raise stopped(operation, tally, "the connection to the database failed") from translate(
            error
        )
