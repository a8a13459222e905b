"""What a bulk operation reports back: counts, ids in input order and every failure.

Both classes are plain dataclasses whose annotations resolve at run time (no TYPE_CHECKING-only
names), so pydantic and FastAPI can use them as response types:
``TypeAdapter(BulkOperationResult).dump_python(result, mode="json")``.
"""

from __future__ import annotations

import dataclasses
import enum

# Imported at run time on purpose: pydantic resolves these annotations to build a schema.
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic

from ._types import IdT

# "<record>" is how RecordValidationError names a problem with the record as a whole.
_WHOLE_RECORD = "<record>"

__all__ = ["BulkOperationResult", "FailureKind", "RecordFailure", "validation_problems"]


class FailureKind(enum.StrEnum):
    """Why a record of a bulk call was not written."""

    CONFLICT = "conflict"
    """Skipped: a unique constraint already holds its key (``ignore_conflicts=True``)."""
    VALIDATION = "validation"
    """Refused before reaching the database: unknown column, wrong type, missing field."""
    INTEGRITY = "integrity"
    """The database refused it: unique, not-null, foreign-key or check constraint."""
    DATABASE = "database"
    """Any other database error (value out of range, malformed data...)."""
    BATCH_ROLLED_BACK = "batch_rolled_back"
    """Valid itself, but its batch was rolled back because another record in it failed."""
    UNAVAILABLE = "unavailable"
    """Not written: the database became unreachable (or the connection died) during the call."""
    NOT_FOUND = "not_found"
    """Not written: no row has its key (or the row is soft-deleted), ``bulk_update_rows``."""
    DUPLICATE = "duplicate"
    """Not written: a later record of the same call (``bulk_upsert``, ``bulk_update_rows``) has
    the same key, and the last one wins."""
    NOT_ATTEMPTED = "not_attempted"
    """Not written: the call stopped before its batch was written (the input or the progress
    callback raised; see ``BulkOperationError``)."""


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """One record (or, for update/delete, one batch of rows) that was not written."""

    index: int | None
    """Position of the record in the input (``None`` for a batch of update/delete rows)."""
    kind: FailureKind
    """What went wrong, as a stable machine-readable value."""
    message: str
    """The human-readable reason, with the database's own message where there is one."""
    ids: tuple[Any, ...] = ()
    """Primary keys involved, for update/delete batches."""
    record: Mapping[str, Any] | None = None
    """The input record as the repository saw it, so it can be retried."""
    field: str | None = None
    """For a validation failure, the field at fault (the first, when several are), dotted
    like pydantic's ``loc``; None when the record as a whole is refused."""
    problems: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """For a validation failure, every field at fault and why (``<record>`` for the whole)."""

    def __str__(self) -> str:
        return self.message

    @classmethod
    def invalid(
        cls, index: int | None, error: ValueError, *, record: Mapping[str, Any] | None = None
    ) -> RecordFailure:
        """The failure of a record refused by validation (RecordValidationError or pydantic)."""
        problems = validation_problems(error)
        fields = [name for name in problems if name != _WHOLE_RECORD]
        return cls(
            index,
            FailureKind.VALIDATION,
            str(error),
            record=record,
            field=fields[0] if fields else None,
            problems=problems,
        )


def validation_problems(error: ValueError) -> dict[str, str]:
    """Field (dotted, as pydantic's ``loc``; ``<record>`` for the whole) -> why, for a
    RecordValidationError or a pydantic ValidationError."""
    # Read by shape, not by class: the results are what the errors module builds on (its
    # BulkOperationError carries one), so it may not import that module back.
    problems = getattr(error, "problems", None)  # RecordValidationError
    if isinstance(problems, Mapping):
        return {str(field): str(why) for field, why in problems.items()}
    errors = getattr(error, "errors", None)  # pydantic's ValidationError
    if callable(errors):
        return {
            ".".join(str(part) for part in err["loc"]) or _WHOLE_RECORD: str(err["msg"])
            for err in errors()
        }
    return {}


# No slots=True: on Python 3.11 a slotted frozen dataclass cannot be built through its
# subscripted alias (``BulkOperationResult[int](...)``): typing sets __orig_class__ on the
# new instance, and the frozen __setattr__ of the slotted copy of the class raises TypeError.
@dataclass(frozen=True)
class BulkOperationResult(Generic[IdT]):
    """The outcome of ``bulk_create``, ``bulk_update`` or ``bulk_delete``.

    For ``bulk_create``, every input record is accounted for exactly once:
    ``success_count + error_count == len(input)``, ``created_ids`` follows input order, and
    each record not created appears in ``failures`` (and as a string in ``errors``).
    For ``bulk_upsert`` the same holds with ``created_ids + updated_ids + unchanged_ids`` as
    the records written or found up to date, each list in input order.
    For ``bulk_update``/``bulk_delete``, ``success_count`` is the number of rows changed and
    ``affected_ids`` lists them.

    The ids are typed by the repository's key: ``BulkOperationResult[int]`` from a
    ``BaseRepository`` of a model with ``id: Mapped[int]``; a bare ``BulkOperationResult``
    is ``BulkOperationResult[Any]``.
    """

    success_count: int = 0
    """Records created (upserts: created, updated or unchanged), or rows updated/deleted."""
    error_count: int = 0
    """Records (or rows) that were not written: skipped conflicts included."""
    created_ids: list[IdT] = dataclasses.field(default_factory=list)
    """Primary keys of the created rows, in input order."""
    errors: list[str] = dataclasses.field(default_factory=list)
    """One readable line per failure, as ``failures`` but as strings."""
    failures: list[RecordFailure] = dataclasses.field(default_factory=list)
    """Structured detail of every failure: input index, kind, message."""
    affected_ids: list[IdT] = dataclasses.field(default_factory=list)
    """Primary keys of the rows changed by ``bulk_update``/``bulk_delete``."""
    updated_ids: list[IdT] = dataclasses.field(default_factory=list)
    """``bulk_upsert``: primary keys of the existing rows it changed, in input order."""
    unchanged_ids: list[IdT] = dataclasses.field(default_factory=list)
    """``bulk_upsert``: primary keys of the existing rows that already held the record's
    values (not written, no event), in input order."""

    @property
    def total(self) -> int:
        """Records (or rows) looked at: ``success_count + error_count``."""
        return self.success_count + self.error_count

    @property
    def conflicts(self) -> list[RecordFailure]:
        """The failures that are skipped unique conflicts."""
        return [f for f in self.failures if f.kind is FailureKind.CONFLICT]
