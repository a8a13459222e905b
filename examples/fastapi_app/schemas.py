"""Request and response bodies, and the whitelist of filters a client may use."""

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from baserepo import BulkOperationResult, FailureKind

__all__ = [
    "BulkChangeResult",
    "BulkImportResult",
    "FailureOut",
    "UserCreate",
    "UserFilters",
    "UserListParams",
    "UserOut",
    "UserUpdate",
]


class UserCreate(BaseModel):
    """A new user. The repository validates with it too (bulk imports, record by record), and
    checks the values against the columns (lengths, integer ranges)."""

    model_config = ConfigDict(extra="forbid")

    email: str
    name: str
    age: int | None = Field(default=None, ge=0)
    department: str | None = None
    is_active: bool = True


class UserUpdate(BaseModel):
    """Fields to change; only those the client sent are written (``exclude_unset``)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    name: str | None = None
    age: int | None = Field(default=None, ge=0)
    department: str | None = None
    is_active: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    age: int | None
    department: str | None
    is_active: bool


class UserFilters(BaseModel):
    """The only ``field__lookup`` filters a client may send, declared one by one.

    Query parameters are never passed straight to the repository: any column and any lookup
    would be open to every client (``password_hash__startswith`` guessed a character at a
    time, ``__regex`` scans of unindexed columns). An unknown parameter is refused with 422
    (``extra="forbid"``).
    """

    model_config = ConfigDict(extra="forbid")

    email__iexact: str | None = None
    name__icontains: str | None = None
    department: str | None = None
    department__in: list[str] | None = None
    age__gte: int | None = None
    age__gt: int | None = None
    age__lte: int | None = None
    age__lt: int | None = None
    is_active: bool | None = None

    def filters(self) -> dict[str, Any]:
        """The filters the client set, as ``repo.list`` takes them."""
        return self.model_dump(include=set(UserFilters.model_fields), exclude_none=True)


class UserListParams(UserFilters):
    """Filters plus paging; FastAPI reads the whole model from the query string."""

    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)
    order_by: Literal["id", "-id", "name", "-name", "age", "-age"] = "id"


class FailureOut(BaseModel):
    """One record (or batch of rows) that was not written."""

    index: int | None
    """Position in the request body (None for a batch of rows of a bulk update/delete)."""
    kind: FailureKind
    reason: str
    field: str | None = None
    """For a validation failure, the field at fault."""


def _failures(result: BulkOperationResult) -> list[FailureOut]:
    # The failure's `record` (the input echoed back) is left out on purpose: the client sent it.
    return [
        FailureOut(index=f.index, kind=f.kind, reason=f.message, field=f.field)
        for f in result.failures
    ]


class BulkImportResult(BaseModel):
    """``BulkOperationResult`` of a bulk import: every record is created or in ``failures``."""

    success_count: int
    error_count: int
    created_ids: list[int]
    failures: list[FailureOut]

    @classmethod
    def of(cls, result: BulkOperationResult) -> Self:
        return cls(
            success_count=result.success_count,
            error_count=result.error_count,
            created_ids=result.created_ids,
            failures=_failures(result),
        )


class BulkChangeResult(BaseModel):
    """``BulkOperationResult`` of a bulk update or delete: the rows it changed."""

    success_count: int
    error_count: int
    affected_ids: list[int]
    failures: list[FailureOut]

    @classmethod
    def of(cls, result: BulkOperationResult) -> Self:
        return cls(
            success_count=result.success_count,
            error_count=result.error_count,
            affected_ids=result.affected_ids,
            failures=_failures(result),
        )
