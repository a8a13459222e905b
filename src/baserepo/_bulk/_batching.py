"""Cutting any iterable or async iterable into lists, holding one batch at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["DEFAULT_BATCH_SIZE", "batched"]

DEFAULT_BATCH_SIZE = 2000
"""Records per bulk_create batch when neither the caller nor the dialect's strategy says
otherwise (MariaDB); within 5-10% of the best size in bench/batch_size.py."""


async def batched(source: Iterable[T] | AsyncIterable[T], size: int) -> AsyncIterator[list[T]]:
    if isinstance(source, AsyncIterable):
        batch: list[T] = []
        async for item in source:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if isinstance(source, list | tuple):
        for start in range(0, len(source), size):
            yield list(source[start : start + size])
        return
    iterator = iter(source)
    while chunk := list(islice(iterator, size)):
        yield chunk


def is_record_source(value: Any) -> bool:
    return isinstance(value, Iterable | AsyncIterable) and not isinstance(value, str | bytes)
