"""Mistakes in how a bulk call is made are refused before any statement, on every database.

* Empty filters reach every row: ``bulk_update({}, ...)`` rewrote every row and
  ``bulk_delete({}, soft_delete=False)`` emptied the table with no confirmation. Both now need
  ``all_rows=True``.
* ``bulk_create(one_dict)`` iterated the dict's keys (each a failed "record");
  ``batch_size="10"`` failed somewhere inside the engine with an obscure TypeError.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository
from tests.models import User, UserCreate

Factory = async_sessionmaker[AsyncSession]
NAMES = ["Ada", "Bob", "Cy"]


@pytest.fixture
async def people(session_factory: Factory) -> None:
    async with session_factory() as writer, writer.begin():
        writer.add_all(User(name=name, status="old") for name in NAMES)


async def committed(session_factory: Factory, **filters: Any) -> int:
    async with session_factory() as reader:
        return await BaseRepository(User, reader).count(filters, include_deleted=True)


# -- whole-table writes ----------------------------------------------------------------------


async def test_bulk_update_with_no_filters_is_refused(
    session: AsyncSession, session_factory: Factory, people: None, count_queries: Any
) -> None:
    repo = BaseRepository(User, session)

    with count_queries() as log, pytest.raises(ValueError, match="all_rows=True"):
        await repo.bulk_update({}, {"status": "new"})

    assert log.statements == []
    assert await committed(session_factory, status="old") == len(NAMES)


@pytest.mark.parametrize("soft_delete", [True, False])
async def test_bulk_delete_with_no_filters_is_refused(
    soft_delete: bool,
    session: AsyncSession,
    session_factory: Factory,
    people: None,
    count_queries: Any,
) -> None:
    repo = BaseRepository(User, session)

    with count_queries() as log, pytest.raises(ValueError, match="every row"):
        await repo.bulk_delete({}, soft_delete=soft_delete)

    assert log.statements == []
    assert await committed(session_factory, deleted_at=None) == len(NAMES)


async def test_all_rows_true_updates_and_deletes_every_row(
    session: AsyncSession, session_factory: Factory, people: None
) -> None:
    repo = BaseRepository(User, session)

    updated = await repo.bulk_update({}, {"status": "new"}, all_rows=True)
    soft = await repo.bulk_delete({}, all_rows=True)
    hard = await repo.bulk_delete({}, soft_delete=False, all_rows=True, include_deleted=True)

    assert (updated.success_count, soft.success_count, hard.success_count) == (3, 3, 3)
    assert await committed(session_factory) == 0


@pytest.mark.parametrize("call", ["update", "delete"])
async def test_all_rows_true_with_filters_is_a_contradiction(
    call: str, session: AsyncSession, session_factory: Factory, people: None
) -> None:
    repo = BaseRepository(User, session)

    both = (
        repo.bulk_update({"name": "Ada"}, {"status": "new"}, all_rows=True)
        if call == "update"
        else repo.bulk_delete({"name": "Ada"}, soft_delete=False, all_rows=True)
    )
    with pytest.raises(ValueError, match="all_rows=True means every row"):
        await both

    assert await committed(session_factory, status="old", deleted_at=None) == len(NAMES)


# -- records and batch sizes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data_list",
    [
        {"name": "Ada", "email": "ada@x.org"},  # one record, not a list of them
        UserCreate(name="Ada"),  # iterating a pydantic model gives (name, value) pairs
        "Ada",
        None,
        42,
    ],
    ids=["dict", "pydantic-model", "str", "None", "int"],
)
async def test_bulk_create_refuses_anything_but_a_collection_of_records(
    data_list: Any, session: AsyncSession, session_factory: Factory, count_queries: Any
) -> None:
    repo = BaseRepository(User, session)

    with count_queries() as log, pytest.raises(TypeError, match="data_list must be an iterable"):
        await repo.bulk_create(data_list)

    assert log.statements == []
    assert await committed(session_factory) == 0


async def test_bulk_create_still_takes_any_iterable_of_records(
    session: AsyncSession, session_factory: Factory
) -> None:
    async def stream() -> AsyncIterator[dict[str, str]]:
        for name in ("Dan", "Eve"):
            yield {"name": name}

    repo = BaseRepository(User, session)
    results = [
        await repo.bulk_create({"name": n} for n in ("Ada", "Bob")),  # a generator
        await repo.bulk_create(({"name": "Cy"},)),  # a tuple
        await repo.bulk_create(stream()),
    ]

    assert [r.success_count for r in results] == [2, 1, 2]
    assert await committed(session_factory) == 5


BAD_BATCH_SIZES: list[Any] = ["10", 1.5, True, 10.0]


def _calls(repo: BaseRepository[User, Any, Any]) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    return {
        "bulk_create": lambda size: repo.bulk_create([{"name": "Zed"}], batch_size=size),
        "bulk_update": lambda size: repo.bulk_update({"name": "Ada"}, {"status": "x"}, size),
        "bulk_delete": lambda size: repo.bulk_delete({"name": "Ada"}, batch_size=size),
    }


@pytest.mark.parametrize("call", ["bulk_create", "bulk_update", "bulk_delete"])
@pytest.mark.parametrize("size", BAD_BATCH_SIZES, ids=repr)
async def test_a_batch_size_of_the_wrong_type_is_a_type_error_naming_it(
    call: str,
    size: Any,
    session: AsyncSession,
    session_factory: Factory,
    people: None,
    count_queries: Any,
) -> None:
    repo = BaseRepository(User, session)

    with count_queries() as log, pytest.raises(TypeError, match="batch_size must be an int"):
        await _calls(repo)[call](size)

    assert log.statements == []
    assert await committed(session_factory) == len(NAMES)
    assert await committed(session_factory, status="old", deleted_at=None) == len(NAMES)


@pytest.mark.parametrize("call", ["bulk_create", "bulk_update", "bulk_delete"])
async def test_a_batch_size_below_one_is_a_value_error(
    call: str, session: AsyncSession, people: None
) -> None:
    repo = BaseRepository(User, session)
    for size in (0, -5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            await _calls(repo)[call](size)


async def test_all_rows_must_be_a_bool(
    session: AsyncSession, session_factory: Factory, people: None
) -> None:
    repo = BaseRepository(User, session)
    with pytest.raises(TypeError, match="all_rows must be True or False"):
        await repo.bulk_delete({}, soft_delete=False, all_rows="yes")  # type: ignore[arg-type]
    assert await committed(session_factory) == len(NAMES)
