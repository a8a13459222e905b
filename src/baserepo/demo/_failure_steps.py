"""Steps 6 and 7 of the tour: a batch with bad records, and a transaction rolled back whole."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baserepo import FailureKind

from ._data import bad_batch

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from baserepo import BulkOperationResult

    from ._events import EventCounter
    from ._model import UserRepository
    from ._reporters import Reporter

__all__ = ["error_handling", "transaction_rollback"]


async def error_handling(repo: UserRepository, out: Reporter) -> dict[str, Any]:
    out.section("6. Error handling: 12 records, 5 of them bad, batches of 4")
    users_data = bad_batch()
    result = await repo.bulk_create(users_data, batch_size=4)
    if result.error_count > 0:
        out.say(
            f"Partial success: {result.success_count} created, {result.error_count} failed "
            "(a batch that the database refuses is rolled back whole)"
        )
        out.table(
            "Per-record failures",
            ("index", "kind", "reason"),
            [(f.index, f.kind.value, f.message) for f in result.failures],
        )
    else:
        out.say(f"Complete success: {result.success_count} users created")

    # Error recovery: records refused only because a neighbour sank their batch are retried.
    retry = [
        f.record for f in result.failures if f.kind is FailureKind.BATCH_ROLLED_BACK and f.record
    ]
    retried = await repo.bulk_create(retry)
    out.say(
        f"Retried the {len(retry)} innocent records of rolled-back batches: "
        f"{retried.success_count} created, {retried.error_count} failed"
    )
    return {
        "input": len(users_data),
        "created": result.success_count,
        "failed": result.error_count,
        "failures": [(f.index, f.kind.value) for f in result.failures],
        "retried": len(retry),
        "retry_created": retried.success_count,
    }


async def transaction_rollback(
    session: AsyncSession, repo: UserRepository, out: Reporter, counter: EventCounter
) -> dict[str, Any]:
    out.section("7. Transaction rollback")
    rows_before = await repo.count(include_deleted=True)
    events_before = sum(counter.events.values())
    batch1 = [{"name": f"Tx A{i}", "email": f"tx.a{i}@example.com"} for i in range(50)]
    batch2 = [{"name": f"Tx B{i}", "email": f"tx.b{i}@example.com"} for i in range(50)]
    batch2[17]["email"] = "jane@example.com"  # already taken
    inside: list[BulkOperationResult] = []
    rolled_back = False
    # The count above opened an implicit transaction; begin() needs it finished first.
    await session.commit()
    try:
        async with session.begin():
            result1 = await repo.bulk_create(batch1)
            result2 = await repo.bulk_create(batch2, batch_size=10)
            inside = [result1, result2]
            out.say(
                f"Inside the transaction: batch1 created {result1.success_count}, "
                f"batch2 created {result2.success_count} and failed {result2.error_count} "
                "(its bad SAVEPOINT rolled back alone)"
            )
            if result1.error_count > 0 or result2.error_count > 0:
                raise RuntimeError("Batch processing failed")
    except RuntimeError:
        rolled_back = True
        out.say("All operations rolled back")
    rows_after = await repo.count(include_deleted=True)
    events = sum(counter.events.values()) - events_before
    out.say(f"Rows before: {rows_before}, after: {rows_after}; events delivered: {events}")
    return {
        "rolled_back": rolled_back,
        "created_inside": sum(r.success_count for r in inside),
        "failed_inside": sum(r.error_count for r in inside),
        "rows_before": rows_before,
        "rows_after": rows_after,
        "events": events,
    }
