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

from sqlalchemy import ColumnElement, and_, bindparam, case, select, update
from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, translate
from .._results import FailureKind, RecordFailure
from .._telemetry import BulkCall, note_strategy, rolled_back
from .._transactions import atomic
from ._guards import refuse_autocommit, retiring_broken_connection
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy
from ._row_statements import (
    StatementsByShape,
    common_name,
    condition_shape,
    key_name,
    row_parameters,
    value_name,
)
from .tally import Tally, stopped

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from .dialect import BulkDialect, ChangeTarget

__all__ = ["CASE_MAX_ROWS", "RowChange", "RowUpdates", "case_update_rows"]

CASE_MAX_ROWS = 500
"""Rows of one CASE statement. The database tries a row's WHEN branches one after the other,
so a statement's cost grows with the square of its rows, against a fixed cost per statement:
10,000 rows on SQLite took 0.65 s in statements of 100, 0.52 s of 250, 0.34 s of 500 and
0.94 s of 1,000 (docs/bulk-operations.md)."""


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
        telemetry = BulkCall("bulk_update_rows", self._info.model.__name__, tally)
        try:
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
                    with telemetry.batch(len(batch)):
                        await self._one_batch(batch, tally, condition, common, on_batch)
                except _Unavailable as error:
                    for later in batches[position + 1 :]:
                        for change in later:
                            tally.fail(
                                _row_failure(change, FailureKind.NOT_ATTEMPTED, "not written")
                            )
                    if tally.success_count == 0 and all(
                        f.kind in (FailureKind.UNAVAILABLE, FailureKind.NOT_ATTEMPTED)
                        for f in tally.failures
                    ):
                        raise translate(error.cause) from error.cause
                    raise stopped(
                        "bulk_update_rows", tally, "the connection to the database failed"
                    ) from translate(error.cause)
        finally:
            telemetry.finish()  # the rows refused before any batch too

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
                held = f"rows {batch[0].index}-{batch[-1].index}"
                rolled_back(held, None, f"{database_message(error)}{spent}")
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
    note_strategy("case")
    pk = target.pk
    if not returning:
        where = and_(pk.in_(keys), condition)
        locked = set((await session.execute(select(pk).where(where).with_for_update())).scalars())
        if not locked:
            return []
        kept = [i for i, key in enumerate(keys) if key in locked]
        keys = [keys[i] for i in kept]
        columns = {name: [values[i] for i in kept] for name, values in columns.items()}
    names = tuple(columns)
    shape = (target.table, names, len(keys), tuple(common), returning, condition_shape(condition))

    def build() -> Any:
        return _case_statement(target, condition, names, len(keys), tuple(common), returning)

    statement = build() if shape[-1] is None else _CASE_STATEMENTS.get_or_build(shape, build)
    parameters = row_parameters(keys, columns, common)
    parameters["baserepo_keys"] = keys
    if returning:
        return list((await session.execute(statement, parameters)).scalars())
    await session.execute(statement, parameters)
    return keys


_CASE_STATEMENTS: StatementsByShape[Any] = StatementsByShape(32)
"""Building and compiling a 1,000-row CASE was about half of a SQLite call's time."""


def _case_statement(
    target: ChangeTarget,
    condition: ColumnElement[bool],
    names: tuple[str, ...],
    rows: int,
    common: tuple[str, ...],
    returning: bool,
) -> Any:
    pk, table = target.pk, target.table
    # The condition also after the keys were read and locked under it: a cheap re-check.
    where = and_(pk.in_(bindparam("baserepo_keys", expanding=True, type_=pk.type)), condition)
    # Typed parameters: each value is bound as its column binds it (datetimes on SQLite, JSON).
    key_binds = [bindparam(key_name(i), type_=pk.type) for i in range(rows)]
    assignments: dict[str, Any] = {
        name: bindparam(common_name(name), type_=table.c[name].type) for name in common
    }
    for j, name in enumerate(names):
        column = table.c[name]
        assignments[name] = case(
            *(
                (pk == key_bind, bindparam(value_name(j, i), type_=column.type))
                for i, key_bind in enumerate(key_binds)
            ),
            else_=column,
        )
    statement: Any = update(table).where(where).values(assignments)
    if returning:
        statement = statement.returning(pk)
    return statement
