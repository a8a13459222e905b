"""The create/update schemas are honoured however the repository is declared, on every database.

Before, only the alias form ``BaseRepository[User, C, U](User, s)`` validated: the subclass form
``class UserRepository(BaseRepository[User, C, U])`` (the usual way applications declare
repositories) let create, bulk_create and update store what the schemas refuse.
"""

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import pytest
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, FailureKind, RecordValidationError
from tests.models import User

Factory = async_sessionmaker[AsyncSession]
EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]+$"


class StrictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    email: str | None = Field(default=None, pattern=EMAIL)
    salary: int | None = Field(default=None, ge=0)


class StrictUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str | None = Field(default=None, pattern=EMAIL)
    salary: int | None = Field(default=None, ge=0)


M = TypeVar("M")
C = TypeVar("C")
U = TypeVar("U")


class SubclassRepository(BaseRepository[User, StrictCreate, StrictUpdate]):
    pass


class DeeperRepository(SubclassRepository):
    pass


class AttributeRepository(BaseRepository[User, Any, Any]):
    create_schema: ClassVar[type[Any] | None] = StrictCreate
    update_schema: ClassVar[type[Any] | None] = StrictUpdate


class TenantRepository(BaseRepository[M, C, U], Generic[M, C, U]):
    """A generic intermediate class, as applications write for shared behaviour."""


class UserTenantRepository(TenantRepository[User, StrictCreate, StrictUpdate]):
    pass


class LooseCreate(BaseModel):
    name: str
    email: str | None = None
    salary: int | None = None


Maker = Callable[[AsyncSession], BaseRepository[User, Any, Any]]

FORMS: dict[str, Maker] = {
    "alias": lambda s: BaseRepository[User, StrictCreate, StrictUpdate](User, s),
    # The fourth type argument (the key's type) says nothing about the schemas.
    "alias with the key type": lambda s: BaseRepository[User, StrictCreate, StrictUpdate, int](
        User, s
    ),
    "subclass": lambda s: SubclassRepository(User, s),
    "subclass of a subclass": lambda s: DeeperRepository(User, s),
    "class attributes": lambda s: AttributeRepository(User, s),
    "generic intermediate": lambda s: UserTenantRepository(User, s),
    "alias of a generic subclass": lambda s: TenantRepository[User, StrictCreate, StrictUpdate](
        User, s
    ),
    "constructor arguments": lambda s: BaseRepository(
        User, s, create_schema=StrictCreate, update_schema=StrictUpdate
    ),
}


@pytest.fixture(params=list(FORMS))
def repo(request: pytest.FixtureRequest, session: AsyncSession) -> BaseRepository[User, Any, Any]:
    return FORMS[request.param](session)


async def stored(session_factory: Factory) -> list[tuple[str, str | None, int | None]]:
    async with session_factory() as reader:
        users = await BaseRepository(User, reader).list(order_by="name")
    return [(u.name, u.email, u.salary) for u in users]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"name": "Neg", "salary": -5}, "salary"),
        ({"name": "Bad", "email": "not-an-email"}, "email"),
    ],
)
async def test_create_validates_through_the_schema(
    record: dict[str, Any],
    field: str,
    repo: BaseRepository[User, Any, Any],
    session_factory: Factory,
) -> None:
    with pytest.raises(RecordValidationError) as caught:
        await repo.create(record)

    assert set(caught.value.problems) == {field}
    assert await stored(session_factory) == []


async def test_bulk_create_validates_each_record_through_the_schema(
    repo: BaseRepository[User, Any, Any], session_factory: Factory
) -> None:
    result = await repo.bulk_create(
        [
            {"name": "Ok", "email": "ok@x.org", "salary": 10},
            {"name": "Neg", "salary": -5},
            {"name": "Bad", "email": "not-an-email"},
        ]
    )

    assert (result.success_count, result.error_count) == (1, 2)
    assert [(f.index, f.kind, f.field) for f in result.failures] == [
        (1, FailureKind.VALIDATION, "salary"),
        (2, FailureKind.VALIDATION, "email"),
    ]
    assert await stored(session_factory) == [("Ok", "ok@x.org", 10)]


async def test_update_validates_through_the_schema(
    repo: BaseRepository[User, Any, Any], session_factory: Factory
) -> None:
    user = await repo.create({"name": "Ada", "email": "ada@x.org", "salary": 10})

    for changes, field in [({"salary": -5}, "salary"), ({"email": "nope"}, "email")]:
        with pytest.raises(RecordValidationError) as caught:
            await repo.update(user.id, changes)
        assert set(caught.value.problems) == {field}

    assert await stored(session_factory) == [("Ada", "ada@x.org", 10)]


async def test_without_a_schema_the_same_records_are_stored(
    session: AsyncSession, session_factory: Factory
) -> None:
    # The refusals above come from the schemas, not from the model's columns.
    repo = BaseRepository(User, session)
    await repo.create({"name": "Neg", "salary": -5})
    await repo.bulk_create([{"name": "Bad", "email": "not-an-email"}])
    assert await stored(session_factory) == [("Bad", "not-an-email", None), ("Neg", None, -5)]


async def test_a_constructor_argument_wins_over_the_declared_schema(
    session: AsyncSession, session_factory: Factory
) -> None:
    repo = SubclassRepository(User, session, create_schema=LooseCreate)

    await repo.create({"name": "Neg", "salary": -5})  # LooseCreate allows it

    assert await stored(session_factory) == [("Neg", None, -5)]
    with pytest.raises(RecordValidationError):  # the update schema is still StrictUpdate
        await repo.update(1, {"salary": -1})
