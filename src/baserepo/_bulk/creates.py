"""bulk_create: the loop that cuts the input into atomic batches and accounts for each record.

The statements are the bulk dialect's (``dialect``); bulk_update/bulk_delete by condition
live in ``changes``; both loops keep their tally with ``tally``.

Each batch is one unit of work (``_transactions.atomic``): a SAVEPOINT inside the caller's
transaction, otherwise a transaction of its own that is committed before the next batch.
A batch that the database refuses is rolled back whole; the record that made it fail is
found by replaying growing prefixes of it in units that are always rolled back. With
``isolate_errors`` the batch is written again in one unit instead, halves in SAVEPOINTs split
until each refused record stands alone and is set aside.

Accounting survives a call that has to stop (``BulkOperationError``): every record taken from
the input is created or reported, the interrupted batch's included. An error of the
connection rather than of the data (``_errors.is_unavailable``) names no culprit: it stops the
call, its batch reported ``unavailable``.
"""

from __future__ import annotations

from itertools import compress
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import exc as sa_exc

from .._errors import database_message, failure_kind, is_unavailable, is_unique_violation, translate
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._telemetry import BulkCall, rolled_back
from .._transactions import atomic, caller_owns_transaction, ensure_savepoints_work
from ._batching import Batches
from ._guards import refuse_autocommit, retiring_broken_connection
from ._key_pool import KeyPool
from ._retry import DEFAULT_RETRY, BatchAttempts, RetryPolicy, is_transient
from .tally import BatchCommitted, ProgressCallback, Tally, describe, report_progress, stopped

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from .._records import RecordPreparer
    from ._insert import Row
    from .dialect import BulkDialect

__all__ = ["BulkEngine", "SelectRows", "WriteBatch"]

WriteBatch: TypeAlias = "Callable[[Tally, list[int], list[Row]], Awaitable[None]]"
"""Writes one prepared batch (input positions and rows), recording outcomes in the tally."""
SelectRows: TypeAlias = "Callable[[list[int], list[Row], Tally], tuple[list[int], list[Row]]]"
"""Chooses what of a prepared batch to write; reports what it sets aside in the tally."""


class BulkEngine:
    """Runs bulk_create for one model on one session."""

    def __init__(
        self,
        session: AsyncSession,
        info: ModelInfo,
        preparer: RecordPreparer,
        dialect: BulkDialect,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._session = session
        self._info = info
        self._preparer = preparer
        self._dialect = dialect
        self._retry = retry
        keys = info.column_keys
        self._unique_labels = [
            (", ".join(group), [keys[attr] for attr in group]) for group in info.unique_groups
        ]

    def clamp(self, batch_size: int | None) -> int:
        if batch_size is None:
            batch_size = self._dialect.default_batch_size
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        return min(batch_size, self._dialect.rows_per_statement(self._info))

    async def create(
        self,
        records: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int | None,
        ignore_conflicts: bool,
        on_batch: BatchCommitted | None,
        progress: ProgressCallback | None,
        isolate_errors: bool = False,
    ) -> BulkOperationResult:
        keys = KeyPool()

        async def write(tally: Tally, positions: list[int], rows: list[Row]) -> None:
            await self._create_batch(
                tally, positions, rows, ignore_conflicts, isolate_errors, on_batch, keys
            )

        return await self.each_batch(
            records, batch_size=batch_size, call="bulk_create", write=write, progress=progress
        )

    async def each_batch(
        self,
        records: Iterable[Any] | AsyncIterable[Any],
        *,
        batch_size: int | None,
        call: str,
        write: WriteBatch,
        progress: ProgressCallback | None,
        select: SelectRows | None = None,
    ) -> BulkOperationResult:
        """The loop every record-taking bulk call shares: batch the input, prepare and
        validate each batch, ``select`` what to write of it (records set aside are reported
        by it), ``write`` the rest, and account for every record when the call stops midway
        (the input, the database or ``progress`` raised)."""
        size = self.clamp(batch_size)
        await refuse_autocommit(self._session, self._info.model)
        tally = Tally()
        telemetry = BulkCall(call, self._info.model.__name__, tally)
        try:
            batches = Batches(records, size)
            iterator = aiter(batches)
            next_index = 0
            while True:
                try:
                    batch = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as error:
                    pending = batches.pending
                    why = f"the input raised {describe(error)}"
                    taken = range(next_index, next_index + len(pending))
                    self._fail_all(tally, taken, pending, FailureKind.NOT_ATTEMPTED, why)
                    raise stopped(call, tally, why) from error
                first_index, next_index = next_index, next_index + len(batch)
                reported_before = len(tally.failures)
                positions: list[int] = []
                rows: list[Row] = []
                try:
                    with telemetry.batch(len(batch)):
                        positions, rows = self._prepare(batch, first_index, tally)
                        if select is not None:
                            positions, rows = select(positions, rows, tally)
                        if rows:
                            await write(tally, positions, rows)
                except _Unavailable as exc:
                    cause = translate(exc.error)
                    if tally.success_count == 0 and reported_before == 0:
                        raise cause from exc.error  # nothing written: the whole input is to retry
                    why = f"the connection to the database failed: {database_message(exc.error)}"
                    self._fail_all(tally, positions, rows, FailureKind.UNAVAILABLE, why)
                    raise stopped(call, tally, why) from cause
                except Exception as error:  # not the data's fault: the batch's unit rolled back
                    if tally.success_count == 0 and reported_before == 0:
                        raise
                    why = f"the call stopped on {describe(error)}"
                    indexes, left = _unreported(tally, reported_before, first_index, batch)
                    self._fail_all(tally, indexes, left, FailureKind.NOT_ATTEMPTED, why)
                    raise stopped(call, tally, why) from error
                try:
                    await report_progress(progress, next_index)
                except Exception as error:
                    raise stopped(
                        call, tally, f"the progress callback raised {describe(error)}"
                    ) from error
            return tally.result()
        finally:
            telemetry.finish()  # also when the call stops midway

    def _prepare(
        self, batch: list[Any], first_index: int, tally: Tally
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
                tally.fail(RecordFailure.invalid(index, exc, record=_safe(record)))
            else:
                positions.append(index)
        return positions, rows

    async def _create_batch(
        self,
        tally: Tally,
        positions: list[int],
        rows: list[Row],
        ignore_conflicts: bool,
        isolate_errors: bool,
        on_batch: BatchCommitted | None,
        keys: KeyPool,
    ) -> None:
        attempts = BatchAttempts(self._retry, self._session)
        while True:
            try:
                async with atomic(self._session), retiring_broken_connection(self._session):
                    ids = await self._dialect.insert(
                        self._session,
                        self._info,
                        rows,
                        ignore_conflicts=ignore_conflicts,
                        key_pool=keys,
                    )
                    _announce(on_batch, ids, rows)
            except sa_exc.SQLAlchemyError as error:
                keys.rolled_back()  # the next attempt (or the culprit search) reuses them
                if await attempts.again(error):  # a deadlock or serialization failure
                    continue
                if is_unavailable(error):
                    raise _Unavailable(error) from error
                if isolate_errors:
                    await self._write_isolating(
                        tally, positions, rows, ignore_conflicts, on_batch, keys
                    )
                else:
                    await self._report_failed_batch(
                        tally, positions, rows, ignore_conflicts, error, keys
                    )
                return
            break
        keys.committed()
        self._account(tally, positions, rows, ids)

    def _account(
        self, tally: Tally, positions: list[int], rows: list[Row], ids: list[Any | None]
    ) -> None:
        """A committed batch: each row created, or skipped as a conflict (``None`` id)."""
        if None not in ids:  # no per-row accounting to do
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

    async def _write_isolating(
        self,
        tally: Tally,
        positions: list[int],
        rows: list[Row],
        ignore_conflicts: bool,
        on_batch: BatchCommitted | None,
        keys: KeyPool,
    ) -> None:
        """``isolate_errors``: write the refused batch again in one unit, every record the
        database refuses set aside."""
        session = self._session
        # Rolled-back SAVEPOINTs must not take the outer unit with them (SQLite's driver).
        await ensure_savepoints_work(session)
        ids: list[Any | None] = [None] * len(rows)
        refused: dict[int, sa_exc.SQLAlchemyError] = {}
        try:
            async with atomic(session), retiring_broken_connection(session):
                # The whole batch was just refused: start with its halves.
                await self._split(
                    rows,
                    0,
                    len(rows),
                    ids,
                    refused,
                    ignore_conflicts,
                    keys,
                    known_to_fail=len(rows) > 1,
                )
                kept = [offset not in refused for offset in range(len(rows))]
                _announce(on_batch, list(compress(ids, kept)), list(compress(rows, kept)))
        except sa_exc.SQLAlchemyError as error:
            keys.rolled_back()
            if is_unavailable(error):
                raise _Unavailable(error) from error
            # The unit itself failed (its commit, say): nothing of it stands.
            await self._report_failed_batch(tally, positions, rows, ignore_conflicts, error, keys)
            return
        keys.committed()
        for offset, cause in refused.items():
            index = positions[offset]
            tally.fail(
                RecordFailure(
                    index,
                    failure_kind(cause),
                    f"record {index}: {_reason(cause)} (set aside, the rest of its batch written)",
                    record=rows[offset],
                )
            )
        kept = [offset not in refused for offset in range(len(rows))]
        self._account(
            tally,
            list(compress(positions, kept)),
            list(compress(rows, kept)),
            list(compress(ids, kept)),
        )

    async def _split(
        self,
        rows: list[Row],
        start: int,
        stop: int,
        ids: list[Any | None],
        refused: dict[int, sa_exc.SQLAlchemyError],
        ignore_conflicts: bool,
        keys: KeyPool,
        *,
        known_to_fail: bool,
    ) -> None:
        """Write ``rows[start:stop]`` in a SAVEPOINT; if refused, each half on its own, down
        to single records (about 2 log2(n) statements per refused record, each row written
        about log2(refused) times: far fewer than a prefix search per refused record)."""
        if not known_to_fail:
            mark = keys.mark()
            try:
                async with self._session.begin_nested():
                    ids[start:stop] = await self._dialect.insert(
                        self._session,
                        self._info,
                        rows[start:stop],
                        ignore_conflicts=ignore_conflicts,
                        key_pool=keys,
                    )
                return
            except sa_exc.SQLAlchemyError as error:
                keys.rolled_back(mark)
                if is_unavailable(error):
                    raise
                if stop - start == 1:
                    refused[start] = error
                    return
        middle = (start + stop) // 2
        for low, high in ((start, middle), (middle, stop)):
            await self._split(
                rows, low, high, ids, refused, ignore_conflicts, keys, known_to_fail=False
            )

    async def _report_failed_batch(
        self,
        tally: Tally,
        positions: list[int],
        rows: list[Row],
        ignore_conflicts: bool,
        error: sa_exc.SQLAlchemyError,
        keys: KeyPool,
    ) -> None:
        culprit, cause = await self._find_culprit(rows, ignore_conflicts, error, keys)
        reason = _reason(cause)
        span = f"records {positions[0]}-{positions[-1]}"
        blamed = positions[culprit] if culprit is not None else None
        rolled_back(f"records {positions[0]}-{positions[-1]}", blamed, reason)
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
                    # The culprit's reason is not repeated here: docs/guide.md counts conflicts
                    # with `"unique" in error.lower()`, and innocent records must not match.
                    f"record {index}: not written, its batch ({span}) was rolled back "
                    f"because record {positions[culprit]} failed (retry it alone)",
                    record=row,
                )
            tally.fail(failure)

    async def _find_culprit(
        self, rows: list[Row], ignore_conflicts: bool, error: BaseException, keys: KeyPool
    ) -> tuple[int | None, BaseException]:
        """Smallest failing prefix of the batch; its last row is the one at fault."""
        low, high, cause = 1, len(rows), error
        confirmed = len(rows) == 1
        while low < high:
            middle = (low + high) // 2
            failure = await self._probe(rows[:middle], ignore_conflicts, keys)
            if failure is None:
                low = middle + 1
            elif is_transient(failure):
                # A deadlock or busy database says nothing about these rows: blame nobody
                # rather than the prefix's last record.
                return None, failure
            else:
                high, cause, confirmed = middle, failure, True
        if not confirmed:
            failure = await self._probe(rows, ignore_conflicts, keys)
            if failure is None:
                return None, error  # transient (deadlock, serialisation): nobody to blame
            cause = failure
        return low - 1, cause

    async def _probe(
        self, rows: list[Row], ignore_conflicts: bool, keys: KeyPool
    ) -> BaseException | None:
        session = self._session
        unit = await (
            session.begin_nested() if caller_owns_transaction(session) else session.begin()
        )
        mark = keys.mark()
        try:
            async with retiring_broken_connection(session):
                await self._dialect.insert(
                    session, self._info, rows, ignore_conflicts=ignore_conflicts, key_pool=keys
                )
        except sa_exc.SQLAlchemyError as failure:
            if is_unavailable(failure):
                raise _Unavailable(failure) from failure
            return failure
        finally:
            await unit.rollback()
            keys.rolled_back(mark)
        return None

    def _fail_all(
        self,
        tally: Tally,
        indexes: Iterable[int],
        records: Sequence[Any],
        kind: FailureKind,
        why: str,
    ) -> None:
        for index, record in zip(indexes, records, strict=True):
            tally.fail(
                RecordFailure(
                    index, kind, f"record {index}: not written, {why}", record=_safe(record)
                )
            )

    def _unique_values(self, row: Row) -> str:
        # Runs once per skipped record, inside the batch's accounting: no per-row setup.
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


def _unreported(
    tally: Tally, reported_before: int, first_index: int, batch: list[Any]
) -> tuple[list[int], list[Any]]:
    """The records of the batch starting at ``first_index`` not yet in the tally (nothing of
    a batch is counted as created before its unit commits)."""
    reported = {f.index for f in tally.failures[reported_before:]}
    left = [offset for offset in range(len(batch)) if first_index + offset not in reported]
    return [first_index + offset for offset in left], [batch[offset] for offset in left]


def _safe(record: Any) -> Any:
    return record if isinstance(record, dict) else None


def _announce(on_batch: BatchCommitted | None, ids: list[Any | None], rows: list[Row]) -> None:
    """Tell ``on_batch`` (inside the unit, before its commit) which rows it created."""
    if on_batch is None:
        return
    if None not in ids:
        on_batch(ids, rows)
        return
    # compress, not (id, row) pairs: no tuple per row for the GC to chase.
    kept = [i is not None for i in ids]
    if any(kept):
        on_batch(list(compress(ids, kept)), list(compress(rows, kept)))


def _reason(cause: BaseException) -> str:
    reason = database_message(cause)
    if is_unique_violation(cause) and "unique" not in reason.lower():
        reason = f"unique constraint violated: {reason}"
    return reason
