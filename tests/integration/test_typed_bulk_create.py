"""bulk_create with a pydantic create schema: whole batches through the schema at once, with
the same outcome per record as record-by-record validation, on every database."""

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, FailureKind
from tests.models import User, UserCreate

NOON_PLUS_TWO = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))


def person(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"person {i}", "email": f"p{i}@example.com", **extra}


# Batches of 3: a clean one (the quick look), then ones that go record by record.
RECORDS: list[tuple[dict[str, Any], FailureKind | None]] = [
    (person(0, salary="12"), None),  # "12" made an int by the schema
    (person(1, salary=13), None),
    (person(2, last_login=datetime(2024, 1, 1, 10)), None),
    (person(3, is_active="perhaps"), FailureKind.VALIDATION),  # the schema refuses it
    (person(4, salary=2**31), FailureKind.VALIDATION),  # the schema's int has no range
    (person(5, last_login=NOON_PLUS_TWO), None),  # aware: stored as 10:00 UTC
    (person(6, name="x" * 101), FailureKind.VALIDATION),  # String(100)
    (person(7), None),
    (person(8, email=None), None),
]


@pytest.mark.parametrize("shape", ["dicts", "instances"])
async def test_a_schema_batch_has_the_outcome_of_record_by_record_validation(
    shape: str, session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    records: list[Any] = [record for record, _ in RECORDS]
    expected = {i: kind for i, (_, kind) in enumerate(RECORDS) if kind is not None}
    if shape == "instances":  # what the schema refuses can't be an instance: left out
        records = [UserCreate(**r) for i, r in enumerate(records) if i != 3]
        expected = {i - (i > 3): kind for i, kind in expected.items() if i != 3}
    repo = BaseRepository(User, session, create_schema=UserCreate)

    result = await repo.bulk_create(records, batch_size=3)

    assert {f.index: f.kind for f in result.failures} == expected, result.errors
    assert result.success_count == len(records) - len(expected)
    async with session_factory() as fresh:
        found = await fresh.execute(select(User.id, User.email, User.salary, User.last_login))
        rows = {r.id: r for r in found}
    written = [r for i, r in enumerate(records) if i not in expected]
    for new_id, record in zip(result.created_ids, written, strict=True):
        row = rows[new_id]
        email = record["email"] if isinstance(record, dict) else record.email
        assert row.email == email
    by_email = {r.email: r for r in rows.values()}
    assert by_email["p0@example.com"].salary == 12
    assert by_email["p5@example.com"].last_login == datetime(2024, 1, 1, 10)
    assert by_email["p2@example.com"].last_login == datetime(2024, 1, 1, 10)
