"""The generics still work at run time, where applications subscript them: the guide's alias
form with three type arguments, the key's type as a fourth, results and events as pydantic
(FastAPI) types. The defaults come from typing_extensions before Python 3.13."""

import dataclasses
import typing
from typing import Any
from uuid import UUID

import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, BulkOperationResult, EventType, RepositoryEvent, create_engine
from tests.models import User, UserCreate, UserUpdate


def test_three_type_arguments_fill_the_key_with_any() -> None:
    alias = BaseRepository[User, UserCreate, UserUpdate]

    assert typing.get_origin(alias) is BaseRepository
    assert typing.get_args(alias) == (User, UserCreate, UserUpdate, Any)


def test_four_type_arguments_name_the_key() -> None:
    assert typing.get_args(BaseRepository[User, UserCreate, UserUpdate, int])[3] is int


def test_more_type_arguments_than_parameters_are_refused() -> None:
    with pytest.raises(TypeError, match="Too many arguments"):
        BaseRepository[User, UserCreate, UserUpdate, int, str]  # type: ignore[misc]


async def test_the_alias_form_records_its_arguments_on_the_instance() -> None:
    # _schemas.py reads the schemas from there; building a repository does no I/O.
    engine = create_engine("sqlite+aiosqlite://")
    async with AsyncSession(engine) as session:
        repo = BaseRepository[User, UserCreate, UserUpdate](User, session)
        arguments = typing.get_args(repo.__orig_class__)  # type: ignore[attr-defined]
    await engine.dispose()

    assert arguments == (User, UserCreate, UserUpdate, Any)


def test_a_result_typed_by_its_key_validates_the_ids() -> None:
    adapter = TypeAdapter(BulkOperationResult[UUID])
    key = UUID(int=7)

    result = adapter.validate_python({"success_count": 1, "created_ids": [str(key)]})

    assert result.created_ids == [key]
    assert adapter.dump_python(result, mode="json")["created_ids"] == [str(key)]
    with pytest.raises(ValidationError):
        adapter.validate_python({"created_ids": ["not a uuid"]})


def test_a_bare_result_keeps_any_ids() -> None:
    adapter = TypeAdapter(BulkOperationResult)
    result = BulkOperationResult(success_count=2, created_ids=[1, "a"])

    assert adapter.dump_python(result, mode="json")["created_ids"] == [1, "a"]
    assert adapter.json_schema()["properties"]["created_ids"]["items"] == {}


def test_a_result_can_be_built_through_its_subscripted_alias() -> None:
    result = BulkOperationResult[int](success_count=1, created_ids=[5])

    assert result.created_ids == [5]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.success_count = 2  # type: ignore[misc]


def test_an_event_can_be_subscripted_and_built() -> None:
    event = RepositoryEvent[User, int](EventType.CREATED, User, (1, 2))

    assert (event.model, event.ids) == (User, (1, 2))
