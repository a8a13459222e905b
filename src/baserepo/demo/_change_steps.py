"""Steps 4 and 5 of the tour: ``bulk_update`` and ``bulk_delete`` by filter, soft and hard."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from baserepo import EventType

from ._model import utcnow

if TYPE_CHECKING:
    from ._events import EventCounter
    from ._model import UserRepository
    from ._reporters import Reporter

__all__ = ["deletes", "updates"]


async def updates(repo: UserRepository, out: Reporter, counter: EventCounter) -> dict[str, Any]:
    out.section("4. bulk_update")
    result = await repo.bulk_update(
        filters={"department": "engineering"},
        update_data={"salary": 80000, "updated_at": utcnow()},
    )
    basic = result.success_count
    out.say(f"Basic: updated {basic} users in engineering to a salary of 80000")

    events_before, rows_before = counter.snapshot()
    result = await repo.bulk_update(
        filters={"salary__lt": 50000, "department__in": ["sales", "marketing"], "is_active": True},
        update_data={"salary": 55000, "bonus_eligible": True},
        batch_size=50,
        emit_events=True,
    )
    complex_ = result.success_count
    update_events = counter.events[EventType.UPDATED] - events_before[EventType.UPDATED]
    update_rows = counter.rows[EventType.UPDATED] - rows_before[EventType.UPDATED]
    out.say(
        f"Complex filters: {complex_} active sales/marketing users under 50000 raised to 55000 "
        f"in batches of 50 ({update_events} 'updated' events for {update_rows} rows)"
    )

    old_date = utcnow() - timedelta(days=90)
    result = await repo.bulk_update(
        filters={"last_login__lt": old_date, "is_active": True},
        update_data={
            "is_active": False,
            "deactivated_at": utcnow(),
            "deactivation_reason": "inactive",
        },
    )
    conditional = result.success_count
    still_matching = await repo.count(last_login__lt=old_date, is_active=True)
    out.say(
        f"Conditional: deactivated {conditional} users not seen for 90 days "
        f"({still_matching} still match the filter)"
    )

    result = await repo.bulk_update(
        filters={"role": "admin"},
        update_data={"last_privilege_check": utcnow()},
        emit_events=True,
    )
    out.say(f"Event management: stamped last_privilege_check on {result.success_count} admins")
    return {
        "basic": basic,
        "complex": complex_,
        "complex_events": update_events,
        "complex_event_rows": update_rows,
        "conditional": conditional,
        "conditional_left": still_matching,
        "admins": result.success_count,
    }


async def deletes(repo: UserRepository, out: Reporter, counter: EventCounter) -> dict[str, Any]:
    out.section("5. bulk_delete")
    _, rows_before = counter.snapshot()
    result = await repo.bulk_delete(
        filters={"is_active": False}, soft_delete=True, emit_events=True
    )
    soft = result.success_count
    soft_rows = counter.rows[EventType.SOFT_DELETED] - rows_before[EventType.SOFT_DELETED]
    out.say(f"Soft deleted {soft} users ({soft_rows} rows reported by 'soft_deleted' events)")
    out.say(
        f"  still visible with is_active=False: {await repo.count(is_active=False)}; "
        f"with include_deleted=True: {await repo.count(is_active=False, include_deleted=True)}"
    )

    decoys_before = await repo.count(email__startswith="tester")
    result = await repo.bulk_delete(
        filters={"email__startswith": "test_", "created_at__lt": utcnow() - timedelta(days=30)},
        soft_delete=False,
        batch_size=25,
    )
    hard = result.success_count
    decoys_after = await repo.count(email__startswith="tester")
    out.say(f"Permanently deleted {hard} records of old test data (batches of 25)")
    out.say(
        f"  'tester...' addresses kept: {decoys_after} of {decoys_before} "
        "(the '_' in 'test_' is matched literally, not as a LIKE wildcard)"
    )

    cleanup_date = utcnow() - timedelta(days=365)
    result = await repo.bulk_delete(
        filters={"deleted_at__lt": cleanup_date, "deleted_at__isnotnull": True},
        soft_delete=False,
        emit_events=False,
    )
    cleanup = result.success_count
    out.say(f"Cleanup: purged {cleanup} records soft-deleted more than a year ago")
    return {
        "soft": soft,
        "soft_event_rows": soft_rows,
        "hard": hard,
        "decoys_kept": decoys_after,
        "decoys_before": decoys_before,
        "cleanup": cleanup,
    }
