"""The numbers baserepo keeps about itself, read by OpenTelemetry and by Prometheus alike.

Invariant: one source per number. Bulk record counts and batch durations are plain counters
here, kept per batch (never per row) whether or not anyone reads them; cache counts are the
cache's own ``Counters`` (what ``stats()`` shows), read through the runtimes registered with
``watch_cache``. The OpenTelemetry instruments (made once the API is loaded) and the
Prometheus collector (``prometheus.py``) both read them when they are collected, so the two
can never disagree; only the batch histogram is also recorded on OpenTelemetry's instrument
at each batch, the API having no observable histogram.
"""

from __future__ import annotations

import bisect
import threading
import typing
import weakref
from dataclasses import dataclass, field
from typing import Any

from ._otel import meter, observation, on_load

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "BATCH_BUCKETS",
    "BREAKER_STATES",
    "CACHE_COUNTERS",
    "DurationHistogram",
    "bulk_records",
    "cache_breakers",
    "cache_counts",
    "record_batch",
    "record_outcomes",
    "watch_cache",
]

BATCH_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Upper bounds (seconds) of the batch duration histogram: a 10,000-row COPY takes ~40 ms, a
2,000-row MariaDB batch ~0.1 s, a batch waiting on locks seconds."""

CACHE_COUNTERS: dict[str, str] = {
    "hits": "hits",
    "misses": "misses",
    "fills": "fills",
    "stale_fills_refused": "stale_fills_rejected",
    "bypasses": "bypasses",
    "invalidations": "invalidations",
    "invalidation_failures": "invalidation_failures",
    "backend_errors": "backend_errors",
}
"""Metric suffix -> the cache's counter (``cache._stats.Counters``) it reads."""

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""The breaker state gauge's values."""

_lock = threading.RLock()
"""Reentrant: a cache runtime collected while the lock is held retires under it."""
_records: dict[tuple[str, str, str, str], int] = {}
"""(operation, model, outcome, failure kind or "") -> records."""


@dataclass
class DurationHistogram:
    """Batch durations of one (operation, model): counts per bucket (not cumulative)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """(le, count of durations <= le) per bucket, "+Inf" last, as Prometheus wants."""
        running = 0
        for bound, count in zip((*BATCH_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            yield ("+Inf" if bound == float("inf") else repr(bound)), running


_durations: dict[tuple[str, str], DurationHistogram] = {}
_runtimes: weakref.WeakSet[Any] = weakref.WeakSet()
_retired: dict[str, dict[str, int]] = {}
"""Model -> counter -> what cache runtimes collected since counted: counters never go back."""
_histogram: Any = None
"""OpenTelemetry's batch duration histogram, once the API is loaded."""


def record_outcomes(operation: str, model: str, outcomes: dict[tuple[str, str], int]) -> None:
    """Add ``outcomes`` ((outcome, failure kind) -> records) to the bulk record counts."""
    with _lock:
        for (outcome, kind), count in outcomes.items():
            key = (operation, model, outcome, kind)
            _records[key] = _records.get(key, 0) + count


def record_batch(operation: str, model: str, seconds: float, outcome: str) -> None:
    with _lock:
        histogram = _durations.get((operation, model))
        if histogram is None:
            histogram = _durations[(operation, model)] = DurationHistogram()
        histogram.counts[bisect.bisect_left(BATCH_BUCKETS, seconds)] += 1
        histogram.total += seconds
        histogram.count += 1
    if _histogram is not None:
        _histogram.record(
            seconds,
            {"baserepo.operation": operation, "baserepo.model": model, "baserepo.outcome": outcome},
        )


def watch_cache(runtime: Any) -> None:
    """Report the counters of ``runtime`` (a ``CacheRuntime``), and its breaker while it
    lives; when it is collected its counts stay in the totals."""
    _runtimes.add(runtime)
    # The stats, not the runtime: they hold no reference back to it, so it can still die.
    weakref.finalize(runtime, _retire, runtime.stats)


def _retire(stats: Any) -> None:
    with _lock:
        _add_counts(_retired, stats)


def _add_counts(totals: dict[str, dict[str, int]], stats: Any) -> None:
    for table, counters in stats.by_table():
        name = stats.model_name(table)
        into = totals.setdefault(name, dict.fromkeys(CACHE_COUNTERS, 0))
        for counter, attribute in CACHE_COUNTERS.items():
            into[counter] += getattr(counters, attribute)


def bulk_records() -> list[tuple[tuple[str, str, str, str], int]]:
    with _lock:
        return list(_records.items())


def batch_durations() -> list[tuple[tuple[str, str], DurationHistogram]]:
    with _lock:
        return [
            (key, DurationHistogram(list(h.counts), h.total, h.count))
            for key, h in _durations.items()
        ]


def cache_counts() -> dict[str, dict[str, int]]:
    """Model -> counter -> count, summed over every live cache config."""
    with _lock:
        totals = {model: dict(counts) for model, counts in _retired.items()}
        for runtime in list(_runtimes):
            _add_counts(totals, runtime.stats)
    return totals


def cache_breakers() -> dict[str, int]:
    """Backend name -> breaker state value (the worst, when configs share a backend name)."""
    states: dict[str, int] = {}
    for runtime in list(_runtimes):
        value = BREAKER_STATES[str(runtime.guard.breaker.state)]
        name = runtime.backend_name()
        states[name] = max(value, states.get(name, 0))
    return states


# -- OpenTelemetry -------------------------------------------------------------------------


def _observe_records(_options: Any) -> Iterable[Any]:
    for (operation, model, outcome, kind), count in bulk_records():
        attributes = {
            "baserepo.operation": operation,
            "baserepo.model": model,
            "baserepo.outcome": outcome,
        }
        if kind:
            attributes["baserepo.failure_kind"] = kind
        yield observation(count, attributes)


def _observe_cache(name: str) -> Callable[[Any], Iterable[Any]]:
    def observe(_options: Any) -> Iterable[Any]:
        for table, counts in cache_counts().items():
            yield observation(counts[name], {"baserepo.model": table})

    return observe


def _observe_breakers(_options: Any) -> Iterable[Any]:
    for backend, value in cache_breakers().items():
        yield observation(value, {"baserepo.cache.backend": backend})


def _create_instruments() -> None:
    global _histogram
    baserepo_meter = meter()
    baserepo_meter.create_observable_counter(
        "baserepo.bulk.records",
        callbacks=[_observe_records],
        unit="{record}",
        description="Records handled by bulk calls, by outcome (failed: by failure kind).",
    )
    _histogram = baserepo_meter.create_histogram(
        "baserepo.bulk.batch.duration",
        unit="s",
        description="Time of one bulk batch, its retries and culprit search included.",
        explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
    )
    for name in CACHE_COUNTERS:
        baserepo_meter.create_observable_counter(
            f"baserepo.cache.{name}",
            callbacks=[_observe_cache(name)],
            unit="{operation}",
            description=f"Query cache {name.replace('_', ' ')}, per model.",
        )
    baserepo_meter.create_observable_gauge(
        "baserepo.cache.breaker.state",
        callbacks=[_observe_breakers],
        unit="1",
        description="Cache circuit breaker: 0 closed, 1 half-open, 2 open.",
    )


on_load(_create_instruments)
