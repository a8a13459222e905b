"""Mistakes mypy must report: each ``# E: <code>`` line must fail with that error code, and
nothing else in this file may."""

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository
from tests.models import Article, User, UserCreate, UserUpdate


async def inferred(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    user = await repo.get(1)
    article: Article | None = user  # E: assignment
    name: int = (await repo.create({"name": "Ada"})).name  # E: assignment
    await repo.get("1")  # E: arg-type
    await repo.get_many([UUID(int=1)])  # E: list-item
    result = await repo.bulk_create([{"name": "Ada"}])
    keys: list[str] = result.created_ids  # E: assignment
    await repo.create(42)  # E: arg-type
    users: list[Article] = await repo.list()  # E: assignment


async def declared(session: AsyncSession) -> None:
    repo = BaseRepository[User, UserCreate, UserUpdate](User, session)
    await repo.create(UserUpdate(name="Ada"))  # E: arg-type
    await repo.update(1, UserCreate(name="Ada"))  # E: arg-type
    await repo.create({"name": "Ada"})
    await repo.create(UserCreate(name="Ada"))
    BaseRepository[User, UserCreate, UserUpdate](Article, session)  # E: arg-type
