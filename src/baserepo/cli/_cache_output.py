"""What ``baserepo cache`` prints: tables and a progress bar through the demo's reporters
(rich when installed, else plain text), or one JSON object for scripts (``--json``)."""

from __future__ import annotations

import datetime as dt
import json
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..cache import (
        CacheInspection,
        InvalidationReport,
        QueryUsage,
        WarmOutcome,
        WarmReport,
    )
    from ..demo import Reporter

__all__ = [
    "HIT_COUNTERS_NOTE",
    "WarmProgress",
    "print_json",
    "show_inspection",
    "show_invalidation",
    "show_warm",
]

HIT_COUNTERS_NOTE = (
    "Hits, misses and fills are counted in each application process (cache_config.stats()), "
    "not in Redis: this command cannot see them."
)
_QUERY_WIDTH = 90


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, default=str))


def describe_query(operation: str, spec: dict[str, Any] | None) -> str:
    """``list(filters={'is_active': True}, limit=100)``: the arguments a query was called with."""
    if spec is None:
        return f"{operation}(<not stored>)"
    arguments = ", ".join(
        f"{name}={value!r}"
        for name, value in sorted(spec.items())
        if name != "operation" and value not in (None, False, {}, [])
    )
    text = f"{operation}({arguments})"
    return text if len(text) <= _QUERY_WIDTH else text[: _QUERY_WIDTH - 3] + "..."


def show_inspection(
    reporter: Reporter, inspection: CacheInspection, model_path: str, redis: str
) -> None:
    entries = inspection.as_dict()["entries"]
    generation = "none yet (created by the next read)"
    if inspection.generation is not None:
        generation = str(inspection.generation)
        if not inspection.generation_trusted:
            generation += " (moved under another server run: the next read bumps it)"
    moved = inspection.generation_moved_at
    kinds = ", ".join(f"{kind} {count}" for kind, count in inspection.entries_by_kind.items())
    rows = [
        ("Redis", redis),
        ("keys", f"{inspection.keys_base}:*"),
        ("server run_id", inspection.server_run_id or "-"),
        ("generation", generation),
        ("generation last moved", _ago(moved) if moved is not None else "-"),
        (
            "entries",
            f"{entries['total']} ({entries['current']} current, {entries['stale']} stale, "
            f"{entries['other_layouts']} of another column layout)",
        ),
        ("entries by kind", kinds or "-"),
        ("entry memory", f"{inspection.entry_bytes:,} bytes"),
        (
            "write intents in flight",
            f"{inspection.write_intents} (+{inspection.expired_write_intents} expired)",
        ),
        ("fill leases held", str(inspection.leases)),
        ("warm locks", str(inspection.warm_locks)),
        ("tracked queries", str(inspection.tracked_queries)),
    ]
    reporter.table(f"Cache of {inspection.model} ({model_path})", ("", "in Redis"), rows)
    if inspection.popular_queries:
        reporter.table(
            "Popular queries (~usage), most used first",
            ("#", "score", "warm replays it", "query"),
            [
                (
                    rank,
                    f"{query.score:g}",
                    "yes" if query.warmed else "no",
                    describe_query(query.operation, query.spec),
                )
                for rank, query in enumerate(inspection.popular_queries, start=1)
            ],
        )
    else:
        reporter.say("No popular queries recorded (track_usage off, or no reads yet).")
    reporter.say(HIT_COUNTERS_NOTE)


def _ago(moved: dt.datetime) -> str:
    seconds = (dt.datetime.now(dt.UTC) - moved).total_seconds()
    return f"{moved.isoformat(timespec='seconds')} (about {max(seconds, 0):,.0f} s ago)"


class WarmProgress:
    """A ``WarmObserver``: a progress bar while the queries replay, and each one's outcome."""

    def __init__(self, reporter: Reporter | None, model: str) -> None:
        self._reporter = reporter
        self._model = model
        self._stack = ExitStack()
        self._update: Callable[[int], None] | None = None
        self.outcomes: list[tuple[QueryUsage, float, str, str | None]] = []
        """(query, its score when replayed (the warm ages it afterwards), outcome, error)."""

    def started(self, queries: Sequence[QueryUsage]) -> None:
        if self._reporter is not None and queries:
            self._update = self._stack.enter_context(
                self._reporter.progress(f"warming {self._model}", len(queries))
            )

    def replayed(self, usage: QueryUsage, outcome: WarmOutcome, error: str | None) -> None:
        self.outcomes.append((usage, usage.count, outcome, error))
        if self._update is not None:
            self._update(len(self.outcomes))

    def close(self) -> None:
        self._stack.close()

    def as_dict(self, report: WarmReport) -> dict[str, Any]:
        return {
            "model": report.model,
            "warmed": report.warmed,
            "already_cached": report.already_cached,
            "failed": report.failed,
            "duration_seconds": report.duration_seconds,
            "queries": [
                {
                    "operation": usage.operation,
                    "digest": usage.digest,
                    "score": score,
                    "outcome": outcome,
                    "error": error,
                    "spec": usage.spec,
                }
                for usage, score, outcome, error in self.outcomes
            ],
        }


def show_warm(reporter: Reporter, report: WarmReport, progress: WarmProgress) -> None:
    if progress.outcomes:
        reporter.table(
            f"Warmed {report.model}",
            ("#", "outcome", "query", "error"),
            [
                (rank, outcome, describe_query(usage.operation, usage.spec), error or "")
                for rank, (usage, _, outcome, error) in enumerate(progress.outcomes, start=1)
            ],
        )
    else:
        reporter.say(f"{report.model}: no popular query to warm (see `baserepo cache stats`).")
    reporter.say(
        f"{report.warmed} warmed, {report.already_cached} already cached, {report.failed} "
        f"failed in {report.duration_seconds:.2f} s"
    )


def show_invalidation(reporter: Reporter, report: InvalidationReport) -> None:
    reporter.say(
        f"{report.model}: deleted {report.deleted} entries matching {report.pattern!r} and "
        f"moved the generation to {report.generation}: every process reads each cached query "
        "of the model from the database on its next use."
    )
