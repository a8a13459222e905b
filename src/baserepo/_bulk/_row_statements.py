"""What bulk_update_rows' statements built in Python share (the CASE form in ``rows``, the VALUES
join in ``values_rows``): how their parameters are named and filled, and the statements kept by
shape so that each is built and compiled once.

A statement of thousands of rows takes longer to build and compile than to run; the same
statement object, reused, is served by SQLAlchemy's compiled cache and only its parameters
change. The cache is bounded: a statement holds its many parameters, and the last batch of each
call has a shape of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

    from sqlalchemy import ColumnElement

__all__ = ["StatementsByShape", "condition_shape", "row_parameters"]

S = TypeVar("S")


def condition_shape(condition: ColumnElement[bool]) -> Hashable | None:
    """The condition by its structure, or None when it holds values of its own (it cannot be
    part of a statement kept for other calls then). Never by identity: a kept statement holds
    its condition, so an identity key would keep every call's statements alive."""
    key = condition._generate_cache_key()
    if key is None or key.bindparams:
        return None
    return key.key


def row_parameters(
    keys: list[Any], columns: Mapping[str, list[Any]], common: Mapping[str, Any]
) -> dict[str, Any]:
    """The values of a statement built with ``key_name``/``value_name``/``common_name``."""
    parameters = {key_name(i): key for i, key in enumerate(keys)}
    for j, values in enumerate(columns.values()):
        parameters.update({value_name(j, i): value for i, value in enumerate(values)})
    parameters.update({common_name(name): value for name, value in common.items()})
    return parameters


def key_name(row: int) -> str:
    return f"baserepo_k{row}"


def value_name(column: int, row: int) -> str:
    return f"baserepo_c{column}_{row}"


def common_name(name: str) -> str:
    return f"baserepo_s_{name}"


class StatementsByShape(Generic[S]):
    """The last ``size`` statements built, by shape (least recently used dropped first)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._kept: OrderedDict[Hashable, S] = OrderedDict()

    def get_or_build(self, shape: Hashable, build: Callable[[], S]) -> S:
        found = self._kept.get(shape)
        if found is not None:
            self._kept.move_to_end(shape)
            return found
        built = self._kept[shape] = build()
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return built
