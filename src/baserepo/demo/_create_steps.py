"""Steps 1-3 and 8 of the tour: ``bulk_create`` as the guide shows it, against ``create`` in a
loop, and fed by an async generator with a progress callback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from baserepo import EventType

from ._data import GUIDE_USERS, population, stream
from ._model import utcnow
from ._settings import POPULATION_LIMIT

if TYPE_CHECKING:
    from baserepo import BulkOperationResult

    from ._events import EventCounter
    from ._model import UserRepository
    from ._reporters import Reporter

__all__ = ["advanced_create", "basic_create", "long_stream", "performance"]


async def basic_create(repo: UserRepository, out: Reporter) -> dict[str, Any]:
    out.section("1. bulk_create: basic usage")
    result: BulkOperationResult = await repo.bulk_create([dict(user) for user in GUIDE_USERS])
    out.say(f"Created: {result.success_count}")
    out.say(f"Errors: {result.error_count}")
    out.say(f"Created IDs: {result.created_ids}")
    return {
        "created": result.success_count,
        "errors": result.error_count,
        "ids": list(result.created_ids),
    }


async def advanced_create(
    repo: UserRepository, out: Reporter, counter: EventCounter, rows: int
) -> dict[str, Any]:
    out.section("2. bulk_create: batch_size, emit_events, ignore_conflicts")
    staff = population(min(rows, POPULATION_LIMIT), utcnow())
    # Three records repeat the guide's users already in the table, two repeat records of
    # this very input: all five must come back as skipped conflicts, not vanish.
    duplicates = [
        *({"name": f"{u['name']} (again)", "email": u["email"]} for u in GUIDE_USERS),
        {"name": "User 1 (again)", "email": "user1@example.com"},
        {"name": "User 2 (again)", "email": "user2@example.com"},
    ]
    events_before, rows_before = counter.snapshot()
    result = await repo.bulk_create(
        data_list=[*staff, *duplicates],
        batch_size=100,
        emit_events=True,
        ignore_conflicts=True,
    )
    events = counter.events[EventType.CREATED] - events_before[EventType.CREATED]
    event_rows = counter.rows[EventType.CREATED] - rows_before[EventType.CREATED]
    out.say(f"Input: {len(staff) + len(duplicates)} records in batches of 100")
    out.say(f"Created: {result.success_count}, skipped: {result.error_count}")
    if result.error_count > 0:
        out.say("Errors occurred:")
        for error in result.errors:
            out.say(f"  - {error}")
    shown = ", ".join(str(user_id) for user_id in result.created_ids[:5])
    out.say(f"Created users: {shown}, ... ({len(result.created_ids)} ids, in input order)")
    conflicts = [error for error in result.errors if "unique" in error.lower()]
    out.say(f"Handled {len(conflicts)} unique constraint conflicts")
    out.say(f"Subscribed handler received {events} 'created' events for {event_rows} rows")
    return {
        "input": len(staff) + len(duplicates),
        "population": len(staff),
        "created": result.success_count,
        "conflicts": len(conflicts),
        "conflict_indexes": [failure.index for failure in result.conflicts],
        "events": events,
        "event_rows": event_rows,
    }


async def performance(repo: UserRepository, out: Reporter, size: int) -> dict[str, Any]:
    out.section(f"3. Performance comparison: {size} x repo.create vs one bulk_create")

    def users(kind: str) -> list[dict[str, Any]]:
        return [
            {"name": f"Perf {kind} {i}", "email": f"perf.{kind}{i}@example.com", "type": "perf"}
            for i in range(size)
        ]

    individual_data, bulk_data = users("individual"), users("bulk")
    with out.progress("repo.create one by one", size) as update:
        start_time = time.perf_counter()
        for done, data in enumerate(individual_data, start=1):
            await repo.create(data)
            if done % 50 == 0 or done == size:
                update(done)
        individual_time = time.perf_counter() - start_time

    start_time = time.perf_counter()
    result = await repo.bulk_create(bulk_data)
    bulk_time = time.perf_counter() - start_time

    speedup = individual_time / bulk_time
    out.say(f"Individual: {individual_time:.2f}s ({size / individual_time:,.0f} rows/s)")
    out.say(f"Bulk: {bulk_time:.2f}s ({result.success_count / bulk_time:,.0f} rows/s)")
    out.say(f"Speedup: {speedup:.1f}x")
    return {
        "rows": size,
        "individual_created": await repo.count(email__startswith="perf.individual"),
        "bulk_created": result.success_count,
        "individual_seconds": round(individual_time, 4),
        "bulk_seconds": round(bulk_time, 4),
        "speedup": round(speedup, 1),
    }


async def long_stream(repo: UserRepository, out: Reporter, rows: int) -> dict[str, Any]:
    out.section(f"8. A long bulk_create: {rows:,} rows from an async generator")
    calls: list[int] = []
    with out.progress("bulk_create", rows) as update:

        def progress(done: int) -> None:
            calls.append(done)
            update(done)

        start_time = time.perf_counter()
        result = await repo.bulk_create(stream(rows), emit_events=False, progress=progress)
        seconds = time.perf_counter() - start_time
    out.say(
        f"Created {result.success_count:,} rows in {seconds:.2f}s "
        f"({result.success_count / seconds:,.0f} rows/s), {result.error_count} errors"
    )
    return {
        "rows": rows,
        "created": result.success_count,
        "errors": result.error_count,
        "seconds": round(seconds, 3),
        "rows_per_second": round(result.success_count / seconds),
        "progress_calls": len(calls),
        "progress_last": calls[-1] if calls else 0,
        "progress_monotonic": calls == sorted(calls),
    }
