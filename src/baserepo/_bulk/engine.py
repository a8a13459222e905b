"""The batching loop shared by every dialect: atomic batches, full accounting, events.

bulk_create lives here; bulk_update/bulk_delete by condition live in ``changes``, which
reuses ``_Tally`` and ``_report``.

Each batch is one unit of work (``_transactions.atomic``): a SAVEPOINT inside the caller's
transaction, otherwise a transaction of its own that is committed before the next batch.
A batch that the database refuses is rolled back whole; the record that made it fail is
found by replaying growing prefixes of it in units that are always rolled back.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, is_unique_violation, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._transactions import atomic, caller_owns_transaction
from ._batching import batched
from ._insert import InsertStrategy, Row
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from .._records import RecordPreparer

__all__ = ["BatchCommitted", "BulkEngine", "ProgressCallback"]

ProgressCallback = Callable[[int], Any]
"""Called with the number of input records (or rows) handled so far."""

BatchCommitted = Callable[[Sequence[Any], Sequence[Row]], None]
"""Called inside a batch's unit of work with its ids (and rows, for creates); it defers
whatever must follow the commit (events, cache invalidation) with ``after_commit``."""


@dataclass
class _Tally:
    success_count: int = 0
    created_ids: list[Any] = field(default_factory=list)
    affected_ids: list[Any] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    handled: int = 0

    def fail(self, failure: RecordFailure) -> None:
        self.failures.append(failure)

    def result(self) -> BulkOperationResult:
        return BulkOperationResult(
            success_count=self.success_count,
            # A create failure is one record; an update/delete failure is a batch of ids.
            error_count=sum(len(f.ids) or 1 for f in self.failures),
            created_ids=self.created_ids,
            errors=[f.message for f in self.failures],
            failures=self.failures,
            affected_ids=self.affected_ids,
        )


class BulkEngine:
    """Runs bulk create/update/delete for one model on one session."""

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        preparer: RecordPreparer,
        strategy: InsertStrategy,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._session = session
        self._info = info
        self._preparer = preparer
        self._strategy = strategy
        self._retry = retry
        keys = info.column_keys
        self._unique_labels = [
            (", ".join(group), [keys[attr] for attr in group]) for group in info.unique_groups
        ]

    def clamp(self, batch_size: int | None) -> int:
        if batch_size is None:
            batch_size = self._strategy.default_batch_size
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        return min(batch_size, self._strategy.rows_per_statement(self._info))

    async def create(
        self,
        records: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int | None,
        ignore_conflicts: bool,
        on_batch: BatchCommitted | None,
        progress: ProgressCallback | None,
    ) -> BulkOperationResult:
        tally = _Tally()
        size = self.clamp(batch_size)
        next_index = 0
        unavailable: BaseException | None = None
        async for batch in batched(records, size):
            first_index, next_index = next_index, next_index + len(batch)
            if unavailable is not None:
                self._fail_unavailable(tally, range(first_index, next_index), batch, unavailable)
                continue
            positions, rows = self._prepare(batch, first_index, tally)
            if rows:
                try:
                    await self._create_batch(tally, positions, rows, ignore_conflicts, on_batch)
                except _Unavailable as exc:
                    if tally.success_count == 0 and len(tally.failures) == 0:
                        raise translate(exc.error) from exc.error
                    unavailable = exc.error
                    self._fail_unavailable(tally, positions, rows, exc.error)
            await _report(progress, next_index)
        tally.failures.sort(key=lambda f: -1 if f.index is None else f.index)
        return tally.result()

    def _prepare(
        self, batch: list[Any], first_index: int, tally: _Tally
    ) -> tuple[list[int], list[Row]]:
        quick = self._preparer.quick_batch(batch)
        if quick is not None:  # the usual batch: every record surely fine
            return list(range(first_index, first_index + len(batch))), quick
        positions: list[int] = []
        rows: list[Row] = []
        for offset, record in enumerate(batch):
            index = first_index + offset
            try:
                rows.append(self._preparer.to_columns(self._preparer.for_create(record, index)))
            except ValueError as exc:  # RecordValidationError and pydantic's
                tally.fail(
                    RecordFailure(index, FailureKind.VALIDATION, str(exc), record=_safe(record))
                )
            else:
                positions.append(index)
        return positions, rows

    async def _create_batch(
        self,
        tally: _Tally,
        positions: list[int],
        rows: list[Row],
        ignore_conflicts: bool,
        on_batch: BatchCommitted | None,
    ) -> None:
        attempts = BatchAttempts(self._retry, self._session)
        while True:
            try:
                async with atomic(self._session):
                    ids = await self._strategy.insert(
                        self._session, self._info, rows, ignore_conflicts=ignore_conflicts
                    )
                    all_created = None not in ids
                    if on_batch is not None:
                        if all_created:
                            on_batch(ids, rows)
                        else:
                            # compress, not (id, row) pairs: no tuple per row for the GC.
                            kept = [i is not None for i in ids]
                            if any(kept):
                                on_batch(list(compress(ids, kept)), list(compress(rows, kept)))
            except sa_exc.SQLAlchemyError as error:
                if await attempts.again(error):  # a deadlock or serialization failure
                    continue
                if is_unavailable(error):
                    raise _Unavailable(error) from error
                await self._report_failed_batch(tally, positions, rows, ignore_conflicts, error)
                return
            break
        if all_created:  # no per-row accounting to do
            tally.success_count += len(ids)
            tally.created_ids.extend(ids)
            return
        for index, row, new_id in zip(positions, rows, ids, strict=True):
            if new_id is None:
                tally.fail(
                    RecordFailure(
                        index,
                        FailureKind.CONFLICT,
                        f"record {index}: skipped, a unique constraint already holds "
                        f"{self._unique_values(row)}",
                        record=row,
                    )
                )
            else:
                tally.success_count += 1
                tally.created_ids.append(new_id)

    async def _report_failed_batch(
        self,
        tally: _Tally,
        positions: list[int],
        rows: list[Row],
        ignore_conflicts: bool,
        error: sa_exc.SQLAlchemyError,
    ) -> None:
        culprit, cause = await self._find_culprit(rows, ignore_conflicts, error)
        reason = database_message(cause)
        if is_unique_violation(cause) and "unique" not in reason.lower():
            reason = f"unique constraint violated: {reason}"
        span = f"records {positions[0]}-{positions[-1]}"
        for offset, (index, row) in enumerate(zip(positions, rows, strict=True)):
            if culprit is None:
                failure = RecordFailure(
                    index,
                    failure_kind(cause),
                    f"record {index}: not written, its batch ({span}) failed: {reason}",
                    record=row,
                )
            elif offset == culprit:
                failure = RecordFailure(
                    index, failure_kind(cause), f"record {index}: {reason}", record=row
                )
            else:
                failure = RecordFailure(
                    index,
                    FailureKind.BATCH_ROLLED_BACK,
                    # The culprit's reason is not repeated here: the guide counts conflicts
                    # with `"unique" in error.lower()`, and innocent records must not match.
                    f"record {index}: not written, its batch ({span}) was rolled back "
                    f"because record {positions[culprit]} failed (retry it alone)",
                    record=row,
                )
            tally.fail(failure)

    async def _find_culprit(
        self, rows: list[Row], ignore_conflicts: bool, error: BaseException
    ) -> tuple[int | None, BaseException]:
        """Smallest failing prefix of the batch; its last row is the one at fault."""
        low, high, cause = 1, len(rows), error
        confirmed = len(rows) == 1
        while low < high:
            middle = (low + high) // 2
            failure = await self._probe(rows[:middle], ignore_conflicts)
            if failure is None:
                low = middle + 1
            else:
                high, cause, confirmed = middle, failure, True
        if not confirmed:
            failure = await self._probe(rows, ignore_conflicts)
            if failure is None:
                return None, error  # transient (deadlock, serialisation): nobody to blame
            cause = failure
        return low - 1, cause

    async def _probe(self, rows: list[Row], ignore_conflicts: bool) -> BaseException | None:
        session = self._session
        unit = await (
            session.begin_nested() if caller_owns_transaction(session) else session.begin()
        )
        try:
            await self._strategy.insert(
                session, self._info, rows, ignore_conflicts=ignore_conflicts
            )
        except sa_exc.SQLAlchemyError as failure:
            if is_unavailable(failure):
                raise _Unavailable(failure) from failure
            return failure
        finally:
            await unit.rollback()
        return None

    def _fail_unavailable(
        self, tally: _Tally, indexes: Iterable[int], records: Sequence[Any], error: BaseException
    ) -> None:
        reason = database_message(error)
        for index, record in zip(indexes, records, strict=True):
            tally.fail(
                RecordFailure(
                    index,
                    FailureKind.UNAVAILABLE,
                    f"record {index}: not written, the database became unavailable: {reason}",
                    record=_safe(record),
                )
            )

    def _unique_values(self, row: Row) -> str:
        # Once per skipped record (a tenth of a batch in a typical re-import): keep it lean.
        shown = [
            f"({label})=({', '.join([repr(row[key]) for key in group_keys])})"
            for label, group_keys in self._unique_labels
            if all(key in row for key in group_keys)
        ]
        return " or ".join(shown) or "its key"


class _Unavailable(Exception):
    def __init__(self, error: sa_exc.SQLAlchemyError) -> None:
        super().__init__(str(error))
        self.error = error


def _safe(record: Any) -> Any:
    return record if isinstance(record, dict) else None


async def _report(progress: ProgressCallback | None, done: int) -> None:
    if progress is None:
        return
    outcome = progress(done)
    if isinstance(outcome, Awaitable):
        await outcome
