"""Spans: one per repository call (``baserepo.<method>``), and the helpers the bulk engine
and the cache use to add theirs.

Invariant: with no tracer provider (or without ``opentelemetry-api``) no span object is made
and nothing is recorded: every helper returns before touching the API. Without the package
the repository's methods are not even wrapped (``trace_calls``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from .._results import BulkOperationResult
from ..exceptions import BulkOperationError
from ._otel import INSTALLED, current_span, tracer

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._otel import Span

__all__ = ["bulk_attributes", "event", "set_attribute", "span", "trace_calls"]

_DB_SYSTEM_KEY = "_baserepo_db_system"


def trace_calls(cls: type[Any], db_system: Callable[[Any], str | None]) -> None:
    """Wrap every public coroutine method of ``cls`` (its bases' included) in a span named
    ``baserepo.<method>``; nested calls (``restore`` reading with ``get``) nest their spans.
    ``db_system(repository)``: its database's OpenTelemetry name, None while unknown (not
    connected yet).

    Done once, on the class: the methods stay free of span code, and without
    ``opentelemetry-api`` nothing is wrapped at all.
    """
    if not INSTALLED:
        return
    names = {
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    }
    for name in sorted(names):
        setattr(cls, name, _traced(getattr(cls, name), db_system))


def _traced(
    method: Callable[..., Awaitable[Any]], db_system: Callable[[Any], str | None]
) -> Callable[..., Awaitable[Any]]:
    span_name = f"baserepo.{method.__name__}"

    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        active = tracer()
        if active is None:
            return await method(self, *args, **kwargs)
        attributes = {"baserepo.model": self.model.__name__}
        system = _known_db_system(self, db_system)
        if system is not None:
            attributes["db.system"] = system
        with active.start_as_current_span(span_name, attributes=attributes) as current:
            try:
                result = await method(self, *args, **kwargs)
            except BulkOperationError as stopped:
                current.set_attributes(bulk_attributes(stopped.result))
                raise
            if isinstance(result, BulkOperationResult):
                current.set_attributes(bulk_attributes(result))
            if system is None and (system := _known_db_system(self, db_system)) is not None:
                current.set_attribute("db.system", system)  # connected by the call itself
            return result

    return call


def bulk_attributes(result: BulkOperationResult) -> dict[str, int]:
    return {
        "baserepo.records": result.total,
        "baserepo.success_count": result.success_count,
        "baserepo.error_count": result.error_count,
    }


def _known_db_system(repository: Any, db_system: Callable[[Any], str | None]) -> str | None:
    """``db_system(repository)``, asked until it knows (then kept on the repository)."""
    known: str | None = repository.__dict__.get(_DB_SYSTEM_KEY)
    if known is None:
        known = db_system(repository)
        if known is not None:
            repository.__dict__[_DB_SYSTEM_KEY] = known
    return known


class span:
    """A child span of the current one, or nothing at all when tracing is off; the span (or
    None) is what ``with`` gives. Exceptions are recorded on it and set its status."""

    __slots__ = ("_attributes", "_manager", "_name", "current")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._attributes = attributes
        self._manager: Any = None
        self.current: Span | None = None
        """The span, once entered (None with tracing off)."""

    def __enter__(self) -> Span | None:
        active = tracer()
        if active is None:
            return None
        self._manager = active.start_as_current_span(self._name, attributes=self._attributes)
        self.current = self._manager.__enter__()
        return self.current

    def __exit__(self, *exc_info: Any) -> None:
        if self._manager is not None:
            self._manager.__exit__(*exc_info)


def event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """An event on the running call's span, if it is recorded."""
    current = current_span()
    if current is not None:
        current.add_event(name, attributes)


def set_attribute(key: str, value: Any) -> None:
    current = current_span()
    if current is not None:
        current.set_attribute(key, value)
