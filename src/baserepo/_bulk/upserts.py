"""bulk_upsert: the loop that inserts new records and updates existing ones, batch by batch.

It is bulk_create's loop (``creates.BulkEngine``: batching, validation, atomic units, retries,
the culprit search, accounting when the call stops) with another statement: the dialect's
``upsert``. Before a batch is written, the records whose unique key a later record of the same
batch repeats are set aside (kind ``duplicate``: the last one wins), and so are records without
a value for every unique field (NULLs never conflict: such a record could only be inserted,
which is not what an upsert promises). Every record then ends in exactly one of created,
updated, unchanged or failed; the three id lists follow input order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from .._errors import is_unavailable
from .._results import BulkOperationResult, FailureKind, RecordFailure
from .._transactions import atomic, caller_owns_transaction
from ._guards import retiring_broken_connection
from ._insert import group_by_keys
from ._key_pool import KeyPool
from ._retry import BatchAttempts
from ._upsert import Outcome, UpsertPlan
from .creates import BulkEngine, _Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable

    from ._insert import Row
    from .tally import BatchCommitted, ProgressCallback, Tally

__all__ = ["UpsertEngine"]

_CALL = "bulk_upsert"


class UpsertEngine(BulkEngine):
    """Runs bulk_upsert for one model on one session, following ``plan``."""

    plan: UpsertPlan

    async def upsert(
        self,
        records: Iterable[Any] | AsyncIterable[Any],
        *,
        plan: UpsertPlan,
        batch_size: int | None,
        on_created: BatchCommitted | None,
        on_updated: BatchCommitted | None,
        progress: ProgressCallback | None,
    ) -> BulkOperationResult:
        self.plan = plan

        async def write(tally: Tally, positions: list[int], rows: list[Row]) -> None:
            await self._upsert_batch(tally, positions, rows, on_created, on_updated)

        return await self.each_batch(
            records,
            batch_size=batch_size,
            call=_CALL,
            write=write,
            progress=progress,
            select=self._keep_last,
        )

    def _keep_last(
        self, positions: list[int], rows: list[Row], tally: Tally
    ) -> tuple[list[int], list[Row]]:
        """Set aside records without a whole key, and all but the last record of each key."""
        plan = self.plan
        if len(plan.unique_keys) == 1:  # the usual batch, checked at C speed
            values = [row.get(plan.unique_keys[0]) for row in rows]
            if None not in values and len(set(values)) == len(values):
                return positions, rows
        last: dict[tuple[Any, ...], int] = {}
        keyless: set[int] = set()
        for offset, row in enumerate(rows):
            if any(row.get(k) is None for k in plan.unique_keys):
                keyless.add(offset)
            else:
                last[plan.key_of(row)] = offset
        if not keyless and len(last) == len(rows):
            return positions, rows  # the usual batch: nothing to set aside
        label = ", ".join(plan.unique_keys)
        kept_positions: list[int] = []
        kept_rows: list[Row] = []
        for offset, (index, row) in enumerate(zip(positions, rows, strict=True)):
            if offset in keyless:
                tally.fail(
                    RecordFailure(
                        index,
                        FailureKind.VALIDATION,
                        f"record {index}: bulk_upsert matches rows on ({label}) and the record "
                        "gives no value for some of them",
                        record=row,
                        field=next(k for k in plan.unique_keys if row.get(k) is None),
                    )
                )
                continue
            key = plan.key_of(row)
            winner = last[key]
            if winner != offset:
                tally.fail(
                    RecordFailure(
                        index,
                        FailureKind.DUPLICATE,
                        f"record {index}: not written, record {positions[winner]} has the same "
                        f"({label})=({', '.join(map(repr, key))}) and the last one wins",
                        record=row,
                    )
                )
                continue
            kept_positions.append(index)
            kept_rows.append(row)
        return kept_positions, kept_rows

    async def _upsert_rows(self, rows: list[Row]) -> list[tuple[Any, Outcome]]:
        outcomes: list[tuple[Any, Outcome]] = [(None, Outcome.UNCHANGED)] * len(rows)
        for offsets, group in group_by_keys(rows):
            done = await self._dialect.upsert(self._session, self._info, group, self.plan)
            for offset, outcome in zip(offsets, done, strict=True):
                outcomes[offset] = outcome
        return outcomes

    async def _upsert_batch(
        self,
        tally: Tally,
        positions: list[int],
        rows: list[Row],
        on_created: BatchCommitted | None,
        on_updated: BatchCommitted | None,
    ) -> None:
        attempts = BatchAttempts(self._retry, self._session)
        while True:
            try:
                async with atomic(self._session), retiring_broken_connection(self._session):
                    outcomes = await self._upsert_rows(rows)
                    _announce(outcomes, rows, on_created, on_updated)
            except sa_exc.SQLAlchemyError as error:
                if await attempts.again(error):  # a deadlock or serialization failure
                    continue
                if is_unavailable(error):
                    raise _Unavailable(error) from error
                # The culprit search replays prefixes through ``_probe`` (the upsert below).
                await self._report_failed_batch(tally, positions, rows, False, error, KeyPool())
                return
            break
        created, updated, unchanged = tally.created_ids, tally.updated_ids, tally.unchanged_ids
        # Identity tests, not a dict by outcome: an Enum member hashes in Python, per row.
        for new_id, outcome in outcomes:
            if outcome is Outcome.CREATED:
                created.append(new_id)
            elif outcome is Outcome.UPDATED:
                updated.append(new_id)
            else:
                unchanged.append(new_id)
        tally.success_count += len(outcomes)

    async def _probe(
        self, rows: list[Row], ignore_conflicts: bool, keys: KeyPool
    ) -> BaseException | None:
        """Upsert ``rows`` in a unit that is always rolled back: the failure, if any."""
        session = self._session
        unit = await (
            session.begin_nested() if caller_owns_transaction(session) else session.begin()
        )
        try:
            async with retiring_broken_connection(session):
                await self._upsert_rows(rows)
        except sa_exc.SQLAlchemyError as failure:
            if is_unavailable(failure):
                raise _Unavailable(failure) from failure
            return failure
        finally:
            await unit.rollback()
        return None


def _announce(
    outcomes: list[tuple[Any, Outcome]],
    rows: list[Row],
    on_created: BatchCommitted | None,
    on_updated: BatchCommitted | None,
) -> None:
    """Tell the callbacks (inside the unit, before its commit) which rows were created and
    which updated; unchanged rows are announced to nobody."""
    for wanted, callback in ((Outcome.CREATED, on_created), (Outcome.UPDATED, on_updated)):
        if callback is None:
            continue
        ids: list[Any] = []
        kept: list[Row] = []
        for (row_id, outcome), row in zip(outcomes, rows, strict=True):
            if outcome is wanted:
                ids.append(row_id)
                kept.append(row)
        if ids:
            callback(ids, kept)
