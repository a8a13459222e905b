"""What mypy infers from ``BaseRepository(User, session)``, no type arguments written.

``# R: <type>`` is the type mypy must reveal on that line (tests/typecheck/test_typing.py).
"""

from typing import reveal_type

from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository
from tests.models import User, UserCreate


async def reads_and_writes(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    # R: baserepo._repository.facade.BaseRepository[tests.models.User, typing.Mapping[str, Any] | pydantic.main.BaseModel | _typeshed.DataclassInstance, typing.Mapping[str, Any] | pydantic.main.BaseModel | _typeshed.DataclassInstance, int]
    reveal_type(repo)
    reveal_type(repo.model)  # R: type[tests.models.User]
    reveal_type(await repo.get(1))  # R: tests.models.User | None
    reveal_type(await repo.get_many([1, 2]))  # R: list[tests.models.User]
    reveal_type(await repo.list(is_active=True, limit=10))  # R: list[tests.models.User]
    # Without a declared schema, create/update take mappings, pydantic models and dataclasses.
    reveal_type(await repo.create({"name": "Ada"}))  # R: tests.models.User
    reveal_type(await repo.create(UserCreate(name="Ada")))  # R: tests.models.User
    reveal_type(await repo.update(1, {"name": "Ada"}))  # R: tests.models.User | None
    reveal_type(await repo.restore(1))  # R: tests.models.User | None
    reveal_type(await repo.get_or_create(email="a@x.io"))  # R: tuple[tests.models.User, bool]
    reveal_type(await repo.update_or_create(email="a@x.io"))  # R: tuple[tests.models.User, bool]
    page = await repo.page(limit=10)
    reveal_type(page)  # R: baserepo._keyset.Page[tests.models.User]
    reveal_type(page.items)  # R: list[tests.models.User]
    reveal_type(await repo.count())  # R: int


async def bulk_results(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    created = await repo.bulk_create([{"name": "Ada"}])
    reveal_type(created)  # R: baserepo._results.BulkOperationResult[int]
    reveal_type(created.created_ids)  # R: list[int]
    updated = await repo.bulk_update({"id__in": created.created_ids}, {"is_active": False})
    reveal_type(updated.affected_ids)  # R: list[int]
    deleted = await repo.bulk_delete({"name": "Ada"})
    reveal_type(deleted.affected_ids)  # R: list[int]
    upserted = await repo.bulk_upsert([{"name": "Ada", "email": "a@x.io"}], unique_fields="email")
    reveal_type(upserted.created_ids)  # R: list[int]
    reveal_type(upserted.updated_ids)  # R: list[int]
    reveal_type(upserted.unchanged_ids)  # R: list[int]
    rows = await repo.bulk_update_rows([{"id": 1, "name": "Bea"}])
    reveal_type(rows.affected_ids)  # R: list[int]
