"""Tracing, metrics and logs (docs/observability.md): optional imports kept here, cheap hooks
for the repository, the bulk engine and the cache."""

from . import logs as logs
from .batches import BulkCall, note_strategy, rolled_back
from .metrics import watch_cache
from .tracing import event, set_attribute, span, trace_calls

__all__ = [
    "BulkCall",
    "event",
    "note_strategy",
    "rolled_back",
    "set_attribute",
    "span",
    "trace_calls",
    "watch_cache",
]
