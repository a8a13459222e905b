"""Cutting any iterable or async iterable into lists, holding one batch at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from itertools import islice
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["DEFAULT_BATCH_SIZE", "Batches"]

DEFAULT_BATCH_SIZE = 2000
"""Records per bulk_create batch when neither the caller nor the bulk dialect says otherwise;
also the documented default of ``bulk_create(batch_size=None)`` (docs/performance.md)."""


class Batches(Generic[T]):
    """The source in lists of ``size``; ``pending`` holds what was taken of the batch being
    filled, so that records taken before the source raised can still be accounted for."""

    def __init__(self, source: Iterable[T] | AsyncIterable[T], size: int) -> None:
        self.pending: list[T] = []
        self._batches = self._cut(source, size)

    def __aiter__(self) -> AsyncIterator[list[T]]:
        return self._batches

    async def _cut(
        self, source: Iterable[T] | AsyncIterable[T], size: int
    ) -> AsyncIterator[list[T]]:
        if isinstance(source, AsyncIterable):
            async for item in source:
                self.pending.append(item)
                if len(self.pending) >= size:
                    yield self._take()
            if self.pending:
                yield self._take()
            return
        if isinstance(source, list | tuple):
            for start in range(0, len(source), size):
                yield list(source[start : start + size])
            return
        iterator = iter(source)
        # extend() keeps the items it got before the iterator raised; list(islice()) would not.
        while True:
            self.pending.extend(islice(iterator, size))
            if not self.pending:
                return
            yield self._take()

    def _take(self) -> list[T]:
        batch, self.pending = self.pending, []
        return batch
