"""bulk_update / bulk_delete: change every row matching a condition, one atomic batch at a time.

Keyset pagination on the primary key visits every matching row once, even when the change
itself makes a row stop matching (``is_active=True`` -> ``False``). Each batch is one unit of
work (``_transactions.atomic``): a SAVEPOINT inside the caller's transaction, otherwise a
transaction of its own that is committed before the next batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._transactions import atomic
from .engine import BatchCommitted, ProgressCallback, _report, _Tally

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._insert import InsertStrategy, Row

__all__ = ["BulkChanges"]


class BulkChanges:
    """Runs bulk update/delete by condition for one model on one session."""

    def __init__(self, session: AsyncSession, info: ModelInfo, strategy: InsertStrategy) -> None:
        self._session = session
        self._info = info
        self._strategy = strategy

    async def change_where(
        self,
        condition: ColumnElement[bool],
        *,
        values: Row | None,
        batch_size: int,
        on_batch: BatchCommitted | None,
        progress: ProgressCallback | None,
    ) -> BulkOperationResult:
        """Update (``values``) or hard-delete (``values=None``) the rows matching ``condition``."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        tally = _Tally()
        size = max(1, min(batch_size, self._strategy.max_parameters))
        table = self._info.table
        pk = table.c[self._info.column_keys[self._info.pk_attr]]
        dialect = self._session.sync_session.get_bind().dialect
        returning = dialect.delete_returning if values is None else dialect.update_returning
        one_statement = returning and self._strategy.limited_subquery_changes
        last_pk: Any = None
        while True:
            query = select(pk).where(condition).order_by(pk).limit(size)
            if last_pk is not None:
                query = query.where(pk > last_pk)
            ids: list[Any] = []
            try:
                async with atomic(self._session):
                    if one_statement:
                        # One round trip per batch: the batch's keys are chosen, locked and
                        # changed by the same statement, which returns the keys it changed.
                        target = pk.in_(query.with_for_update())
                        ids = sorted(
                            (
                                await self._session.execute(
                                    _change(table, target, values).returning(pk)
                                )
                            ).scalars()
                        )
                    else:
                        ids = list((await self._session.execute(query.with_for_update())).scalars())
                        if ids:
                            await self._session.execute(_change(table, pk.in_(ids), values))
                    if not ids:
                        break
                    if on_batch is not None:
                        on_batch(ids, [values] if values else [])
            except sa_exc.SQLAlchemyError as error:
                if one_statement and not is_unavailable(error):
                    ids = await self._keys_of(query)
                if not ids:
                    if tally.success_count == 0 and not tally.failures:
                        raise translate(error) from error
                    tally.fail(_batch_failure((), error, "could not select the next batch"))
                    break
                tally.fail(_batch_failure(tuple(ids), error, "batch rolled back"))
            else:
                tally.success_count += len(ids)
                tally.affected_ids.extend(ids)
            last_pk = ids[-1]
            # Rows handled, not batches: a failed batch counts every row it held.
            await _report(progress, tally.success_count + sum(len(f.ids) for f in tally.failures))
        return tally.result()

    async def _keys_of(self, query: Any) -> list[Any]:
        """The keys a failed one-statement batch held, to report them and move past them."""
        try:
            async with atomic(self._session):
                return list((await self._session.execute(query)).scalars())
        except sa_exc.SQLAlchemyError:
            return []


def _change(table: Any, target: ColumnElement[bool], values: Row | None) -> Any:
    if values is None:
        return delete(table).where(target)
    return update(table).where(target).values(values)


def _batch_failure(ids: tuple[Any, ...], error: BaseException, what: str) -> RecordFailure:
    kind = FailureKind.UNAVAILABLE if is_unavailable(error) else failure_kind(error)
    return RecordFailure(
        None,
        kind,
        f"{what} ({len(ids)} rows, ids {ids[:5]}...): {database_message(error)}",
        ids=ids,
    )
