"""A bulk result is a valid pydantic/FastAPI response type, and a validation failure names its
field, on every database.

Before, ``TypeAdapter(BulkOperationResult)`` failed ("not fully defined": ``Mapping`` was
imported for type checkers only) and a failure carried only its message.
"""

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, BulkOperationResult, FailureKind, RecordFailure
from tests.models import User


class Address(BaseModel):
    city: str


class NestedCreate(BaseModel):
    """A schema with a nested model: pydantic's ``loc`` then has two parts."""

    name: str
    salary: int | None = Field(default=None, ge=0)
    address: Address | None = None


def dumped(result: BulkOperationResult) -> dict[str, Any]:
    data: dict[str, Any] = TypeAdapter(BulkOperationResult).dump_python(result, mode="json")
    json.dumps(data)  # plain JSON all the way down
    return data


async def test_a_bulk_create_result_dumps_to_json_with_each_failed_field(
    session: AsyncSession,
) -> None:
    repo = BaseRepository(User, session)
    when = datetime(2024, 1, 2, 3, 4, 5)
    result = await repo.bulk_create(
        [
            {"name": "Ada", "email": "ada@x.org", "last_login": when},
            {"name": "Bob", "salary": "lots"},  # the column check names the field
            {"email": "no-name@x.org"},  # a required column is missing
            {"name": "Cy", "nope": 1},  # no such column
            {"name": "Dup", "email": "ada@x.org"},  # skipped: unique conflict
        ],
        ignore_conflicts=True,
    )

    data = dumped(result)

    assert data["success_count"] == 1
    assert data["error_count"] == 4
    assert data["created_ids"] == result.created_ids
    failures = {f["index"]: f for f in data["failures"]}
    assert {i: (f["kind"], f["field"]) for i, f in failures.items()} == {
        1: ("validation", "salary"),
        2: ("validation", "name"),
        3: ("validation", "nope"),
        4: ("conflict", None),
    }
    assert "salary" in failures[1]["problems"]
    assert failures[1]["message"] == str(result.failures[0])
    assert data["errors"] == result.errors


async def test_pydantic_locations_name_nested_fields(session: AsyncSession) -> None:
    repo = BaseRepository(User, session, create_schema=NestedCreate)
    result = await repo.bulk_create(
        [
            {"name": "Ok"},
            {"name": "Neg", "salary": -5, "address": {"city": 5}},
            {"salary": 1},
        ]
    )

    failures = dumped(result)["failures"]

    assert [(f["index"], f["field"]) for f in failures] == [(1, "salary"), (2, "name")]
    assert set(failures[0]["problems"]) == {"salary", "address.city"}
    assert all(f["kind"] == "validation" for f in failures)


async def test_a_bulk_update_result_dumps_its_affected_ids(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    created = await repo.bulk_create([{"name": f"u{i}", "salary": i} for i in range(4)])

    result = await repo.bulk_update({"salary__gte": 2}, {"status": "raised"})

    data = dumped(result)
    assert sorted(data["affected_ids"]) == sorted(created.created_ids[2:])
    assert (data["success_count"], data["error_count"], data["failures"]) == (2, 0, [])


def test_the_result_has_a_json_schema_for_openapi() -> None:
    schema = TypeAdapter(BulkOperationResult).json_schema()

    failure = schema["$defs"]["RecordFailure"]["properties"]
    assert {"index", "kind", "message", "field", "problems", "record"} <= set(failure)
    assert set(schema["$defs"]["FailureKind"]["enum"]) == {kind.value for kind in FailureKind}


def test_a_failure_round_trips_through_json() -> None:
    failure = RecordFailure(3, FailureKind.VALIDATION, "record 3: bad", field="salary")
    result = BulkOperationResult(error_count=1, errors=[failure.message], failures=[failure])
    adapter = TypeAdapter(BulkOperationResult)

    again = adapter.validate_json(adapter.dump_json(result))

    assert again == result


def test_a_failure_from_a_plain_error_names_no_field() -> None:
    failure = RecordFailure.invalid(0, ValueError("odd"))
    assert (failure.field, failure.problems, failure.kind) == (None, {}, FailureKind.VALIDATION)


async def test_a_bulk_upsert_result_dumps_its_three_id_lists(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    await repo.bulk_create(
        [{"name": "Ada", "email": "ada@x.org"}, {"name": "Bo", "email": "bo@x.org"}]
    )
    result = await repo.bulk_upsert(
        [
            {"name": "Ada", "email": "ada@x.org"},  # as stored
            {"name": "Bob", "email": "bo@x.org"},
            {"name": "Cy", "email": "cy@x.org"},  # replaced by the next record
            {"name": "Cyd", "email": "cy@x.org"},
        ],
        unique_fields="email",
    )

    data = dumped(result)

    assert data["success_count"] == 3
    assert data["created_ids"] == result.created_ids
    assert len(data["created_ids"]) == 1
    assert data["updated_ids"] == result.updated_ids
    assert len(data["updated_ids"]) == 1
    assert data["unchanged_ids"] == result.unchanged_ids
    assert len(data["unchanged_ids"]) == 1
    assert [(f["index"], f["kind"]) for f in data["failures"]] == [(2, "duplicate")]
    assert TypeAdapter(BulkOperationResult).validate_python(data) == result
