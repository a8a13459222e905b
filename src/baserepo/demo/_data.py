"""The demo's records: the guide's three users, a deterministic staff, a bad batch, a stream."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime

__all__ = ["DEPARTMENTS", "GUIDE_USERS", "bad_batch", "population", "stream"]

DEPARTMENTS = ("engineering", "sales", "marketing", "support")
GUIDE_USERS = (
    {"name": "John Doe", "email": "john@example.com"},
    {"name": "Jane Smith", "email": "jane@example.com"},
    {"name": "Bob Wilson", "email": "bob@example.com"},
)


def population(size: int, now: datetime) -> list[dict[str, Any]]:
    """The staff the update and delete steps work on; deterministic for a given ``now``.

    Every 40th row (offset 7) was soft-deleted 400 days ago (for the cleanup step); every 25th
    (offset 3) is old test data ``test_<i>@...`` and the next one a decoy ``tester<i>@...``
    that the escaped ``email__startswith="test_"`` must not match.
    """
    people: list[dict[str, Any]] = []
    for i in range(size):
        if i % 40 == 7:
            people.append(
                {
                    "name": f"Archived {i}",
                    "email": f"archived{i}@example.com",
                    "is_active": False,
                    "status": "inactive",
                    "deleted_at": now - timedelta(days=400),
                }
            )
        elif i % 25 in (3, 4):
            prefix = "test_" if i % 25 == 3 else "tester"
            people.append(
                {
                    "name": f"Test {i}",
                    "email": f"{prefix}{i}@example.com",
                    "department": "qa",
                    "type": "temporary",
                    "last_login": now - timedelta(days=1),
                    "created_at": now - timedelta(days=60),
                }
            )
        else:
            active = i % 7 != 0
            people.append(
                {
                    "name": f"User {i}",
                    "email": f"user{i}@example.com",
                    "department": DEPARTMENTS[i % len(DEPARTMENTS)],
                    "salary": 30_000 + (i * 7_919 % 60) * 1_000,
                    "is_active": active,
                    "status": "active" if active else "inactive",
                    "role": "admin" if i % 50 == 0 else "member",
                    "last_login": now - timedelta(days=i % 180, hours=12),
                }
            )
    return people


def bad_batch() -> list[dict[str, Any]]:
    """Twelve new users, five of them bad in a different way each (indexes 1, 3, 5, 7, 9)."""
    good: list[dict[str, Any]] = [
        {"name": f"Recovered {i}", "email": f"recovered{i}@example.com"} for i in range(12)
    ]
    good[1] = {"name": None, "email": "noname@example.com"}  # NOT NULL column
    good[3] = {**good[3], "nickname": "Ace"}  # no such column
    good[5] = {**good[5], "email": "john@example.com"}  # already in the table
    good[7] = {**good[7], "salary": "lots"}  # not an integer
    good[9] = {**good[9], "email": good[8]["email"]}  # repeats record 8
    return good


async def stream(rows: int) -> AsyncIterator[dict[str, Any]]:
    """``rows`` new users, yielding to the loop every 1,000 as a real source would."""
    for i in range(rows):
        if i % 1_000 == 0:
            await asyncio.sleep(0)  # a real source (a file, an API) waits now and then
        yield {
            "name": f"Streamed {i}",
            "email": f"stream{i}@example.com",
            "department": DEPARTMENTS[i % len(DEPARTMENTS)],
            "salary": 40_000 + i % 50 * 1_000,
            "type": "imported",
        }
