"""The other ways to declare a repository, and what the key's type is where mypy cannot read it.

``# R: <type>``: what mypy must reveal on that line; ``# E: <code>``: the error it must report.
"""

from typing import Any, reveal_type
from uuid import UUID

from sqlalchemy import Column, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from baserepo import BaseRepository, BulkOperationResult
from tests.models import Base, User, UserCreate, UserUpdate


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[UUID] = mapped_column(primary_key=True)


class Country(Base):
    """A key named otherwise: mypy cannot tell it is the key."""

    __tablename__ = "countries"
    code: Mapped[str] = mapped_column(String(2), primary_key=True)


class Legacy(Base):
    """An unannotated Column: its instances read as a Column to mypy, so the key stays Any."""

    __tablename__ = "legacy"
    id = Column(Integer, primary_key=True)


class UserRepository(BaseRepository[User, UserCreate, UserUpdate, int]):
    pass


async def forms(session: AsyncSession) -> None:
    # The guide's alias form: schemas as written, the key Any unless given fourth.
    alias = BaseRepository[User, UserCreate, UserUpdate](User, session)
    # R: baserepo._repository.facade.BaseRepository[tests.models.User, tests.models.UserCreate, tests.models.UserUpdate, Any]
    reveal_type(alias)
    reveal_type(await alias.get(1))  # R: tests.models.User | None
    keyed = BaseRepository[User, UserCreate, UserUpdate, int](User, session)
    reveal_type((await keyed.bulk_create([])).created_ids)  # R: list[int]
    sub = UserRepository(User, session)
    reveal_type(await sub.list())  # R: list[tests.models.User]
    reveal_type((await sub.bulk_delete({"name": "x"})).affected_ids)  # R: list[int]
    annotated: BaseRepository[User] = BaseRepository(User, session)
    # R: def (data: typing.Mapping[str, Any] | pydantic.main.BaseModel | _typeshed.DataclassInstance) -> typing.Coroutine[Any, Any, tests.models.User]
    reveal_type(annotated.create)


async def keys(session: AsyncSession) -> None:
    orders = BaseRepository(Order, session)
    reveal_type((await orders.bulk_create([])).created_ids)  # R: list[uuid.UUID]
    reveal_type(await orders.get(UUID(int=1)))  # R: tests.typecheck.samples.declared.Order | None
    countries = BaseRepository(Country, session)
    reveal_type((await countries.bulk_create([])).created_ids)  # R: list[Any]
    countries_by_code = BaseRepository[Country, Any, Any, str](Country, session)
    reveal_type((await countries_by_code.bulk_create([])).created_ids)  # R: list[str]
    legacy = BaseRepository(Legacy, session)
    reveal_type((await legacy.bulk_create([])).created_ids)  # R: list[Any]


def bare(result: BulkOperationResult) -> None:
    # A bare BulkOperationResult (the README's annotation) is complete: its ids are Any.
    reveal_type(result.created_ids)  # R: list[Any]
