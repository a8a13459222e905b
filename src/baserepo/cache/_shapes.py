"""How a read's result is captured for the cache and rebuilt from it: a list of rows, a single
row or None, a count.

Invariant: ``decode(prepare(result)())`` gives back a result equal to ``result`` and of the
same shape; rebuilt instances go through ``adopt`` so a hit returns the session's own objects
(``baserepo._identity.adopt``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ._codec import RowCodec

__all__ = ["COUNT", "ONE", "ROWS", "Adopt", "Shape"]

Prepare = Callable[[Any], Callable[[], bytes]]
"""Captures a result (cheaply, at once) and returns the function that makes its bytes later."""
Adopt = Callable[[list[Any]], list[Any]]
"""Makes decoded instances the session's own."""
Shape = Callable[["RowCodec", Adopt], tuple[Prepare, Callable[[bytes], Any]]]


def _rows(codec: RowCodec, adopt: Adopt) -> tuple[Prepare, Callable[[bytes], Any]]:
    return codec.snapshot, lambda payload: adopt(codec.decode(payload))


def _one(codec: RowCodec, adopt: Adopt) -> tuple[Prepare, Callable[[bytes], Any]]:
    def prepare(found: Any) -> Callable[[], bytes]:
        return codec.snapshot([] if found is None else [found])

    def decode(payload: bytes) -> Any:
        rows = adopt(codec.decode(payload))
        return rows[0] if rows else None

    return prepare, decode


def _count(_codec: RowCodec, _adopt: Adopt) -> tuple[Prepare, Callable[[bytes], Any]]:
    def prepare(total: Any) -> Callable[[], bytes]:
        return lambda: orjson.dumps(total)

    return prepare, orjson.loads


ROWS: Shape = _rows
ONE: Shape = _one
COUNT: Shape = _count
