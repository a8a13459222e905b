"""The one module that imports OpenTelemetry, and only when it is installed and first needed.

Invariant: nothing here costs anything until a repository call asks for a tracer; then the API
is imported once (~30 ms) and ``tracer()`` answers None for as long as no tracer provider is
set (the API's proxy provider, or its no-op one), so callers skip span work altogether instead
of building non-recording spans. A provider set later (``set_tracer_provider``, or the
``OTEL_PYTHON_TRACER_PROVIDER`` variable) is picked up by the next call.
"""

from __future__ import annotations

import importlib.util
import os
import typing
from typing import Any

if typing.TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from opentelemetry.metrics import Meter
    from opentelemetry.trace import Span as Span
    from opentelemetry.trace import Tracer

__all__ = ["INSTALLED", "current_span", "meter", "on_load", "tracer"]


def _installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except ModuleNotFoundError:  # no "opentelemetry" namespace at all
        return False


INSTALLED = _installed()
"""``opentelemetry-api`` can be imported (found without importing it)."""

_trace: ModuleType | None = None
_provider: object = None
_tracer: Tracer | None = None
_hooks: list[Callable[[], None]] = []
_from_environment = False
"""The environment names a tracer provider (``OTEL_PYTHON_TRACER_PROVIDER``)."""
_UNKNOWN = object()


def on_load(hook: Callable[[], None]) -> None:
    """Run ``hook`` once the API is imported (metrics create their instruments then)."""
    _hooks.append(hook)
    if _trace is not None:
        hook()


def _load() -> ModuleType:
    global _trace, _from_environment
    from opentelemetry import trace
    from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER

    _trace = trace
    _from_environment = OTEL_PYTHON_TRACER_PROVIDER in os.environ
    for hook in _hooks:
        hook()
    return trace


def tracer() -> Tracer | None:
    """baserepo's tracer from the global provider; None when no provider is set."""
    global _provider, _tracer
    if not INSTALLED:
        return None
    trace = _trace if _trace is not None else _load()
    # The API keeps the provider set in ``_TRACER_PROVIDER`` (None until one is): reading it
    # costs nothing, where ``get_tracer_provider()`` looks the environment up at every call
    # (~1.5 us, more than the rest of an untraced call). The variable naming a provider is
    # read once (``_load``), as the API reads it, so the public function runs only then.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _from_environment:
        return None
    provider = trace.get_tracer_provider()
    if provider is not _provider:
        _provider = provider
        inactive = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
        _tracer = None if inactive else provider.get_tracer("baserepo", _version())
    return _tracer


def current_span() -> Span | None:
    """The span of the running repository call, if one is being recorded."""
    if tracer() is None:
        return None
    assert _trace is not None
    span = _trace.get_current_span()
    return span if span.is_recording() else None


def meter() -> Meter:
    """baserepo's meter; the API's proxy forwards to a provider set later."""
    from opentelemetry import metrics

    return metrics.get_meter("baserepo", _version())


def observation(value: float, attributes: dict[str, Any]) -> Any:
    from opentelemetry.metrics import Observation

    return Observation(value, attributes)


def error_status(description: str) -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR, description)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("baserepo")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"
