"""Checks of a bulk call's arguments, made before any statement: a mistake in how the library is
called is a TypeError or ValueError naming the parameter, never a report of failed records."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._q import Q

__all__ = ["check_batch_size", "check_records", "check_whole_table"]


def check_batch_size(batch_size: Any, *, optional: bool = False) -> None:
    """``batch_size`` is a positive ``int`` (or None where the dialect's default applies)."""
    if batch_size is None and optional:
        return
    # bool is an int, but batch_size=True is surely a slip (of emit_events=True?).
    if not isinstance(batch_size, int) or isinstance(batch_size, bool):
        raise TypeError(
            f"batch_size must be an int, got {type(batch_size).__name__} {batch_size!r:.40}"
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")


def check_records(data_list: Any, *, argument: str = "data_list") -> None:
    """``data_list`` is a collection of records, not one record that happens to be iterable.
    ``argument``: the parameter's name in the caller's signature, for the message."""
    if isinstance(data_list, Mapping) or hasattr(type(data_list), "model_fields"):
        # Iterating a dict gives its keys; iterating a pydantic model gives (name, value) pairs.
        raise TypeError(
            f"{argument} must be an iterable of records, got one {type(data_list).__name__}; "
            "wrap a single record in a list"
        )
    if isinstance(data_list, str | bytes) or not isinstance(data_list, Iterable | AsyncIterable):
        raise TypeError(
            f"{argument} must be an iterable or async iterable of records, "
            f"got {type(data_list).__name__}"
        )


def check_whole_table(operation: str, filters: Mapping[str, Any] | Q, all_rows: bool) -> None:
    """Empty filters reach every row: allowed only when the caller says ``all_rows=True``."""
    if not isinstance(all_rows, bool):
        raise TypeError(f"all_rows must be True or False, got {all_rows!r:.40}")
    if all_rows and filters:
        raise ValueError(
            f"{operation}: all_rows=True means every row, yet filters were given; "
            "drop one or the other"
        )
    if not all_rows and not filters:
        raise ValueError(
            f"{operation} with no filters would change every row of the table; "
            "pass all_rows=True if that is what you mean"
        )
