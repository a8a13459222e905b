"""bulk_update_rows: per-row values by primary key, one UPDATE statement per batch.

Rows come validated and deduplicated (one change per key, ``RowChange``). They are grouped by
the set of columns they write, so every statement sets the same columns on all its rows with
no read of the current values; the usual call (every row the same fields) is one group. Each
group goes in batches, each one unit of work (``_transactions.atomic``: a SAVEPOINT inside the
caller's transaction, else a transaction of its own committed before the next batch), run
again on a transient failure as ``_retry`` says.

How a batch becomes one statement is the bulk dialect's (``BulkDialect.update_rows``):
``case_update_rows`` below is the portable form (``SET c = CASE WHEN pk = ? THEN ? ... END
WHERE pk IN (...)``); PostgreSQL sends one array per column instead. A key the statement did
not reach (no such row, or a soft-deleted one) is reported as ``not_found``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, case, literal, select, update
from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import FailureKind, RecordFailure
from .._transactions import atomic
from ._guards import refuse_autocommit, retiring_broken_connection
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy
from .tally import Tally, stopped

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from .dialect import BulkDialect, ChangeTarget

__all__ = ["CASE_MAX_ROWS", "RowChange", "RowUpdates", "case_update_rows"]

CASE_MAX_ROWS = 1_000
"""Rows of one CASE statement. The database tries a row's WHEN branches one after the other,
so a statement's cost grows with the square of its rows: 1,000 keeps that well under the cost
of sending the rows (10,000 rows per statement was several times slower on SQLite)."""


@dataclass(frozen=True, slots=True)
class RowChange:
    """One validated row of the input: the key it updates and what it writes there."""

    index: int
    """Position in the caller's input."""
    key: Any
    values: dict[str, Any]
    """Column key -> value, what differs per row (stamps common to every row apart)."""
    requested: dict[str, Any]
    """Attribute -> value as the caller asked (the key included), for events and reports."""


class RowUpdates:
    """Runs bulk_update_rows for one model on one session."""

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        dialect: BulkDialect,
        target: ChangeTarget,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._session = session
        self._info = info
        self._dialect = dialect
        self._target = target
        self._retry = retry

    async def run(
        self,
        changes: Sequence[RowChange],
        tally: Tally,
        *,
        condition: ColumnElement[bool],
        common: Mapping[str, Any],
        batch_size: int | None,
        on_batch: Callable[[Sequence[RowChange]], None] | None,
    ) -> None:
        """Write ``changes`` (plus ``common`` on every row, the ``onupdate`` stamps) on the
        rows that match ``condition``; account for each change in ``tally``."""
        if not changes:
            return
        await refuse_autocommit(self._session, self._info.model)
        groups: dict[tuple[str, ...], list[RowChange]] = {}
        for change in changes:
            groups.setdefault(tuple(sorted(change.values)), []).append(change)
        batches: list[list[RowChange]] = []
        for columns, group in groups.items():
            size = self._dialect.rows_per_update(self._target, columns, batch_size)
            batches.extend(group[start : start + size] for start in range(0, len(group), size))
        for position, batch in enumerate(batches):
            try:
                await self._one_batch(batch, tally, condition, common, on_batch)
            except _Unavailable as error:
                for later in batches[position + 1 :]:
                    for change in later:
                        tally.fail(_row_failure(change, FailureKind.NOT_ATTEMPTED, "not written"))
                if tally.success_count == 0 and all(
                    f.kind in (FailureKind.UNAVAILABLE, FailureKind.NOT_ATTEMPTED)
                    for f in tally.failures
                ):
                    raise translate(error.cause) from error.cause
                raise stopped(
                    "bulk_update_rows", tally, "the connection to the database failed"
                ) from translate(error.cause)

    async def _one_batch(
        self,
        batch: list[RowChange],
        tally: Tally,
        condition: ColumnElement[bool],
        common: Mapping[str, Any],
        on_batch: Callable[[Sequence[RowChange]], None] | None,
    ) -> None:
        keys = [change.key for change in batch]
        columns = {name: [change.values[name] for change in batch] for name in batch[0].values}
        attempts = BatchAttempts(self._retry, self._session)
        while True:
            try:
                async with atomic(self._session), retiring_broken_connection(self._session):
                    found = set(
                        await self._dialect.update_rows(
                            self._session, self._target, condition, keys, columns, common
                        )
                    )
                    written = [change for change in batch if change.key in found]
                    if written and on_batch is not None:
                        on_batch(written)
            except sa_exc.SQLAlchemyError as error:
                if await attempts.again(error):
                    continue
                if is_unavailable(error):
                    for change in batch:
                        tally.fail(_row_failure(change, FailureKind.UNAVAILABLE, "not written"))
                    raise _Unavailable(error) from error
                # No culprit search: the statement is all-or-nothing, so every row of the
                # batch is reported with the database's reason.
                spent = f" after {attempts.tries} tries" if attempts.tries > 1 else ""
                why = f"batch of {len(batch)} rows rolled back{spent}: {database_message(error)}"
                for change in batch:
                    tally.fail(_row_failure(change, failure_kind(error), why))
                return
            break
        for change in batch:
            if change.key in found:
                tally.success_count += 1
                tally.affected_ids.append(change.key)
            else:
                tally.fail(
                    _row_failure(
                        change,
                        FailureKind.NOT_FOUND,
                        f"no row with key {change.key!r} (or it is soft-deleted)",
                    )
                )


class _Unavailable(Exception):
    def __init__(self, cause: sa_exc.SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _row_failure(change: RowChange, kind: FailureKind, why: str) -> RecordFailure:
    return RecordFailure(
        change.index,
        kind,
        f"record {change.index} (key {change.key!r}): {why}",
        ids=(change.key,),
        record=change.requested,
    )


def case_rows_per_update(
    max_parameters: int, columns: Sequence[str], batch_size: int | None
) -> int:
    """Rows of one CASE statement: two parameters per row and column, and the key list."""
    fits = max(1, max_parameters // (2 * len(columns) + 2))
    return min(batch_size or CASE_MAX_ROWS, CASE_MAX_ROWS, fits)


async def case_update_rows(
    session: AsyncSession,
    target: ChangeTarget,
    condition: ColumnElement[bool],
    keys: list[Any],
    columns: Mapping[str, list[Any]],
    common: Mapping[str, Any],
    *,
    returning: bool,
) -> list[Any]:
    """``UPDATE t SET c = CASE WHEN pk = k1 THEN v1 ... END WHERE pk IN (...) AND condition``;
    the keys it changed. ``returning``: the database returns them from the UPDATE; otherwise
    they are read and locked first (``FOR UPDATE``), so the UPDATE changes exactly those."""
    pk, table = target.pk, target.table
    where = and_(pk.in_(keys), condition)
    if not returning:
        locked = set((await session.execute(select(pk).where(where).with_for_update())).scalars())
        if not locked:
            return []
        kept = [i for i, key in enumerate(keys) if key in locked]
        keys = [keys[i] for i in kept]
        columns = {name: [values[i] for i in kept] for name, values in columns.items()}
        where = pk.in_(keys)
    # Typed literals: each value is bound as its column binds it (datetimes on SQLite, JSON).
    key_binds = [literal(key, pk.type) for key in keys]
    assignments: dict[str, Any] = dict(common)
    for name, column_values in columns.items():
        column = table.c[name]
        assignments[name] = case(
            *(
                (pk == key_bind, literal(value, column.type))
                for key_bind, value in zip(key_binds, column_values, strict=True)
            ),
            else_=column,
        )
    statement = update(table).where(where).values(assignments)
    if returning:
        return list((await session.execute(statement.returning(pk))).scalars())
    await session.execute(statement)
    return keys
