"""What the create and change loops share: the running tally of a call, the progress
callback, and the error for a call that has to stop.

Invariant: every record (or row) a call took is in the tally exactly once, created/changed or
reported, also when the call stops midway (``stopped`` carries the tally as ``.result``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._results import BulkOperationResult, RecordFailure
from ..exceptions import BulkOperationError

__all__ = [
    "BatchCommitted",
    "ProgressCallback",
    "Tally",
    "describe",
    "report_progress",
    "stopped",
]

ProgressCallback = Callable[[int], Any]
"""Called with the number of input records (or rows) handled so far."""

BatchCommitted = Callable[[Sequence[Any], Sequence[dict[str, Any]]], None]
"""Called inside a batch's unit of work with its ids (and rows, for creates); it defers
whatever must follow the commit (events, cache invalidation) with ``after_commit``."""


@dataclass
class Tally:
    """The outcome of one bulk call so far."""

    success_count: int = 0
    created_ids: list[Any] = field(default_factory=list)
    affected_ids: list[Any] = field(default_factory=list)
    updated_ids: list[Any] = field(default_factory=list)
    unchanged_ids: list[Any] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)

    def fail(self, failure: RecordFailure) -> None:
        self.failures.append(failure)

    def result(self) -> BulkOperationResult:
        self.failures.sort(key=lambda f: -1 if f.index is None else f.index)
        return BulkOperationResult(
            success_count=self.success_count,
            # A create failure is one record; an update/delete failure is a batch of ids.
            error_count=sum(len(f.ids) or 1 for f in self.failures),
            created_ids=self.created_ids,
            errors=[f.message for f in self.failures],
            failures=self.failures,
            affected_ids=self.affected_ids,
            updated_ids=self.updated_ids,
            unchanged_ids=self.unchanged_ids,
        )


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def stopped(operation: str, tally: Tally, why: str) -> BulkOperationError:
    """The error for a call that must stop; raise it ``from`` the reason."""
    result = tally.result()
    if operation in ("bulk_create", "bulk_upsert"):
        done = (
            f"{result.success_count} created and {result.error_count} reported of the "
            f"{result.total} records taken from the input (.result accounts for each; later "
            "records were not taken)"
        )
    else:
        done = (
            f"{result.success_count} rows changed and {result.error_count} reported "
            "(.result lists them; rows not reached still match the filters)"
        )
    return BulkOperationError(f"{operation} stopped after {done}: {why}", result=result)


async def report_progress(progress: ProgressCallback | None, done: int) -> None:
    if progress is None:
        return
    outcome = progress(done)
    if isinstance(outcome, Awaitable):
        await outcome
