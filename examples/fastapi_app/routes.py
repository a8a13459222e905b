"""The endpoints: each takes the request's repository and lets baserepo's errors through to
the handlers of ``errors.py``."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status

from .db import UsersDep
from .models import User
from .schemas import (
    BulkChangeResult,
    BulkImportResult,
    UserCreate,
    UserFilters,
    UserListParams,
    UserOut,
    UserUpdate,
)

__all__ = ["MAX_IMPORT_RECORDS", "router"]

MAX_IMPORT_RECORDS = 10_000
"""Records per bulk import request: a bound on what one request may hold in memory."""

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: int, users: UsersDep) -> User:
    user = await users.get(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    return user


@router.get("", response_model=list[UserOut])
async def list_users(params: Annotated[UserListParams, Query()], users: UsersDep) -> list[User]:
    return await users.list(
        params.filters(), limit=params.limit, offset=params.offset, order_by=params.order_by
    )


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, users: UsersDep) -> User:
    # Committed (and the cache invalidated) before create() returns.
    return await users.create(data)


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(user_id: int, data: UserUpdate, users: UsersDep) -> User:
    user = await users.update(user_id, data.model_dump(exclude_unset=True))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    return user


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: int, users: UsersDep) -> None:
    if not await users.delete(user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")


@router.post("/bulk", response_model=BulkImportResult)
async def import_users(
    records: Annotated[list[dict[str, Any]], Body(max_length=MAX_IMPORT_RECORDS)],
    users: UsersDep,
) -> BulkImportResult:
    """Create many users; each record is created or reported in ``failures`` by its index.

    The body is a list of plain objects, not of ``UserCreate``: FastAPI would refuse the whole
    request for one bad record. The repository validates each record with ``UserCreate``
    and the columns, and reports the bad ones; ``isolate_errors`` keeps a record the
    database refuses (a duplicate email) from rolling back the good records of its batch.
    """
    result = await users.bulk_create(records, isolate_errors=True)
    return BulkImportResult.of(result)


def _required(filters: UserFilters) -> dict[str, Any]:
    chosen = filters.filters()
    if not chosen:
        # The repository refuses an empty filter too (it would reach every row); say so as a
        # client error rather than a 500.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give at least one filter")
    return chosen


@router.patch("", response_model=BulkChangeResult)
async def update_users(
    filters: Annotated[UserFilters, Query()], data: UserUpdate, users: UsersDep
) -> BulkChangeResult:
    """Apply ``data`` to every user matching the filters."""
    result = await users.bulk_update(_required(filters), data.model_dump(exclude_unset=True))
    return BulkChangeResult.of(result)


@router.delete("", response_model=BulkChangeResult)
async def delete_users(
    filters: Annotated[UserFilters, Query()], users: UsersDep
) -> BulkChangeResult:
    """Delete every user matching the filters."""
    return BulkChangeResult.of(await users.bulk_delete(_required(filters)))
