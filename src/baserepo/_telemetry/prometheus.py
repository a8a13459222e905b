"""The Prometheus view of ``metrics``: the one module that imports ``prometheus_client``,
and only when a collector is collected or registered (``baserepo[prometheus]``)."""

from __future__ import annotations

import typing
from typing import Any

from .metrics import (
    CACHE_COUNTERS,
    batch_durations,
    bulk_records,
    cache_breakers,
    cache_counts,
)

if typing.TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.registry import CollectorRegistry

__all__ = ["PrometheusCollector", "register_prometheus"]

_INSTALL_HINT = (
    "the Prometheus collector needs prometheus-client: pip install 'baserepo[prometheus]'"
)


class PrometheusCollector:
    """Exposes baserepo's counters in Prometheus' format; register it on a registry.

    ``baserepo_bulk_records_total{model,operation,outcome,kind}``,
    ``baserepo_bulk_batch_duration_seconds{model,operation}`` (histogram),
    ``baserepo_cache_<counter>_total{model}`` and ``baserepo_cache_breaker_state{backend}``
    (0 closed, 1 half-open, 2 open); docs/observability.md lists them.
    """

    def collect(self) -> Iterator[Any]:
        core = _client()
        records = core.CounterMetricFamily(
            "baserepo_bulk_records",
            "Records handled by bulk calls, by outcome (failed: by failure kind).",
            labels=["model", "operation", "outcome", "kind"],
        )
        for (operation, model, outcome, kind), count in bulk_records():
            records.add_metric([model, operation, outcome, kind], count)
        yield records
        durations = core.HistogramMetricFamily(
            "baserepo_bulk_batch_duration_seconds",
            "Time of one bulk batch, its retries and culprit search included.",
            labels=["model", "operation"],
        )
        for (operation, model), histogram in batch_durations():
            durations.add_metric(
                [model, operation], list(histogram.cumulative()), sum_value=histogram.total
            )
        yield durations
        counts = cache_counts()
        for name in CACHE_COUNTERS:
            family = core.CounterMetricFamily(
                f"baserepo_cache_{name}",
                f"Query cache {name.replace('_', ' ')}, per model.",
                labels=["model"],
            )
            for table, values in counts.items():
                family.add_metric([table], values[name])
            yield family
        breakers = core.GaugeMetricFamily(
            "baserepo_cache_breaker_state",
            "Cache circuit breaker: 0 closed, 1 half-open, 2 open.",
            labels=["backend"],
        )
        for backend, value in cache_breakers().items():
            breakers.add_metric([backend], value)
        yield breakers


def register_prometheus(registry: CollectorRegistry | None = None) -> PrometheusCollector:
    """Register a :class:`PrometheusCollector` on ``registry`` (the default registry when
    None) and return it (``registry.unregister(collector)`` removes it)."""
    _client()  # a clear ImportError before anything is registered
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = PrometheusCollector()
    registry.register(collector)
    return collector


def _client() -> Any:
    try:
        from prometheus_client import core
    except ImportError as missing:
        raise ImportError(_INSTALL_HINT) from missing
    return core
