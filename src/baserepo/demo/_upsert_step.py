"""Step 10 of the tour: ``bulk_upsert``, a price list synced twice from its source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baserepo import EventType

if TYPE_CHECKING:
    from ._events import EventCounter
    from ._model import UserRepository
    from ._reporters import Reporter

__all__ = ["upsert"]


def _contractor(name: str, salary: int) -> dict[str, Any]:
    return {
        "name": name.title(),
        "email": f"contractor_{name}@example.com",
        "department": "contracting",
        "salary": salary,
    }


async def upsert(repo: UserRepository, out: Reporter, counter: EventCounter) -> dict[str, Any]:
    out.section("10. bulk_upsert")
    first = [_contractor("ana", 60_000), _contractor("ben", 61_000), _contractor("cy", 62_000)]
    result = await repo.bulk_upsert(first, unique_fields="email")
    out.say(f"First sync: created {len(result.created_ids)} contractors")

    _, rows_before = counter.snapshot()
    second = [
        _contractor("ana", 65_000),  # a raise: updated
        _contractor("ben", 61_000),  # as stored: unchanged, not written
        _contractor("cy", 62_000),
        _contractor("dee", 50_000),  # repeated below: the last one wins
        _contractor("dee", 52_000),  # new: created
    ]
    again = await repo.bulk_upsert(second, unique_fields="email", update_fields=["salary"])
    updated_rows = counter.rows[EventType.UPDATED] - rows_before[EventType.UPDATED]
    created_rows = counter.rows[EventType.CREATED] - rows_before[EventType.CREATED]
    out.say(
        f"Second sync: {len(again.created_ids)} created, {len(again.updated_ids)} updated, "
        f"{len(again.unchanged_ids)} unchanged, "
        f"{[(f.index, f.kind.value) for f in again.failures]} set aside"
    )
    out.say(f"Events: {created_rows} created and {updated_rows} updated rows announced")
    dee = await repo.list(email="contractor_dee@example.com")
    return {
        "first_created": len(result.created_ids),
        "created": len(again.created_ids),
        "updated": len(again.updated_ids),
        "unchanged": len(again.unchanged_ids),
        "failures": [(f.index, f.kind.value) for f in again.failures],
        "updated_event_rows": updated_rows,
        "created_event_rows": created_rows,
        "dee_salary": dee[0].salary if dee else None,
    }
