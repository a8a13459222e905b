"""What one bulk call tells about its batches: a child span per batch, the batch duration
histogram, record counts by outcome, a DEBUG line per batch and a WARNING per rolled-back one.

Invariant: every record a call's tally holds is counted exactly once in the metrics, batch by
batch as the call goes (``Batch.__exit__``) and the rest when it ends (``BulkCall.finish``,
run also when the call stops midway). Work is per batch, never per row.
"""

from __future__ import annotations

import logging
import time
import typing
from collections import Counter
from contextvars import ContextVar
from typing import Any, Protocol

from ._otel import error_status
from .metrics import record_batch, record_outcomes
from .tracing import set_attribute, span

if typing.TYPE_CHECKING:
    from collections.abc import Sequence

    from ._otel import Span

__all__ = ["Batch", "BulkCall", "note_strategy", "rolled_back"]

logger = logging.getLogger("baserepo.bulk")

_current: ContextVar[Batch | None] = ContextVar("baserepo_batch", default=None)


class _Failure(Protocol):
    @property
    def kind(self) -> Any: ...
    @property
    def ids(self) -> tuple[Any, ...]: ...


class Tallied(Protocol):
    """What is read of a bulk loop's tally (``_bulk.tally.Tally``)."""

    created_ids: list[Any]
    updated_ids: list[Any]
    unchanged_ids: list[Any]
    affected_ids: list[Any]

    @property
    def failures(self) -> Sequence[_Failure]: ...


_AFFECTED_OUTCOME = {"bulk_delete": "deleted"}
"""What ``affected_ids`` means per operation (``updated`` otherwise)."""


class BulkCall:
    """The telemetry of one bulk call over ``tally``."""

    __slots__ = ("_counted", "_failed", "batches", "model", "operation", "tally")

    def __init__(self, operation: str, model: str, tally: Tallied) -> None:
        self.operation = operation
        self.model = model
        self.tally = tally
        self.batches = 0
        self._counted = (0, 0, 0, 0, 0)
        self._failed: Counter[str] = Counter()

    def batch(self, rows: int) -> Batch:
        self.batches += 1
        return Batch(self, rows)

    def count(self, *, final: bool = False) -> None:
        """Add what the tally gained since the last count to the record metrics."""
        tally = self.tally
        now = (
            len(tally.created_ids),
            len(tally.updated_ids),
            len(tally.unchanged_ids),
            len(tally.affected_ids),
            len(tally.failures),
        )
        before = self._counted
        if now == before:
            return
        self._counted = now
        outcomes: dict[tuple[str, str], int] = {}
        for outcome, gained in zip(
            ("created", "updated", "unchanged", _AFFECTED_OUTCOME.get(self.operation, "updated")),
            (n - b for n, b in zip(now[:4], before[:4], strict=True)),
            strict=True,
        ):
            if gained:
                outcomes[(outcome, "")] = outcomes.get((outcome, ""), 0) + gained
        if now[4] != before[4]:
            # Between batches failures are only appended: the new tail is what each batch
            # added. ``Tally.result`` sorts the list in place as the call ends, so the last
            # count reads it whole (once per call) and adds what the tails did not count.
            failed: Counter[str] = Counter()
            for failure in tally.failures if final else tally.failures[before[4] :]:
                failed[str(failure.kind)] += len(failure.ids) or 1
            if final:
                failed -= self._failed
            for kind, count in failed.items():
                outcomes[("failed", kind)] = count
            self._failed += failed
        record_outcomes(self.operation, self.model, outcomes)

    def finish(self) -> None:
        self.count(final=True)
        set_attribute("baserepo.batches", self.batches)


class Batch:
    """One batch of a bulk call, as a context manager; ``with`` gives the batch itself."""

    __slots__ = (
        "_span",
        "_started",
        "_token",
        "call",
        "outcome",
        "rows",
        "strategies",
    )

    def __init__(self, call: BulkCall, rows: int) -> None:
        self.call = call
        self.rows = rows
        self.strategies: list[str] = []
        self.outcome: str | None = None
        """How the batch ended when it did not commit (``rolled_back``, ``retried``: its
        unit failed and is run again); an exception makes it ``error``."""
        self._span = span(
            "baserepo.batch",
            {
                "baserepo.operation": call.operation,
                "baserepo.model": call.model,
                "baserepo.batch": call.batches,
                "baserepo.rows": rows,
            },
        )

    def __enter__(self) -> Batch:
        self._token = _current.set(self)
        self._started = time.perf_counter()
        self._span.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        seconds = time.perf_counter() - self._started
        _current.reset(self._token)
        call = self.call
        strategy = "+".join(self.strategies) or "none"
        outcome = "error" if exc_info[0] is not None else self.outcome
        if outcome is None:
            # No statement said how it wrote: every record was set aside before (validation).
            outcome = "committed" if self.strategies else "nothing_written"
        current = _span_of(self._span)
        if current is not None:
            current.set_attribute("baserepo.strategy", strategy)
            current.set_attribute("baserepo.outcome", outcome)
        self._span.__exit__(*exc_info)
        record_batch(call.operation, call.model, seconds, outcome)
        call.count()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s: batch %d, %d rows by %s in %.1f ms (%s)",
                call.operation,
                call.model,
                call.batches,
                self.rows,
                strategy,
                seconds * 1000,
                outcome,
            )


def _span_of(manager: span) -> Span | None:
    return manager.current


def note_strategy(name: str) -> None:
    """Say how the running batch is written (``copy``, ``unnest``, ``executemany``...)."""
    batch = _current.get()
    if batch is not None and name not in batch.strategies:
        batch.strategies.append(name)


def rolled_back(held: str, culprit: int | None, reason: str) -> None:
    """The running batch (``held``: "records 0-999", "rows with ids ...") was refused and
    rolled back: a WARNING naming its culprit (the input index), and its span marked."""
    batch = _current.get()
    call = batch.call if batch is not None else None
    blamed = f"record {culprit} failed: " if culprit is not None else ""
    logger.warning(
        "%s %s: batch of %s rolled back, %s%s",
        call.operation if call is not None else "bulk call",
        call.model if call is not None else "?",
        held,
        blamed,
        reason,
    )
    if batch is None:
        return
    batch.outcome = "rolled_back"
    current = _span_of(batch._span)
    if current is not None:
        attributes: dict[str, Any] = {"baserepo.reason": reason[:500]}
        if culprit is not None:
            attributes["baserepo.culprit"] = culprit
        current.add_event("batch.rolled_back", attributes)
        current.set_status(error_status(f"batch rolled back: {reason}"[:500]))
