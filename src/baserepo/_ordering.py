"""``order_by`` arguments (``"name"``, ``"-created_at"``, lists, SQLAlchemy expressions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, UnaryExpression

from .exceptions import InvalidFilterError

if TYPE_CHECKING:
    from ._model import ModelInfo

__all__ = ["OrderBy", "order_clauses"]

OrderBy = str | ColumnElement[Any] | UnaryExpression[Any] | Sequence[str | ColumnElement[Any]]


def order_clauses(info: ModelInfo, order_by: OrderBy | None) -> list[Any]:
    """SQL ORDER BY terms; the primary key always ends the list, so pages are stable."""
    items: Sequence[Any]
    if order_by is None:
        items = []
    elif isinstance(order_by, str | ColumnElement):
        items = [order_by]
    else:
        items = list(order_by)
    pk = getattr(info.model, info.pk_attr)
    clauses: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            clauses.append(item)
            continue
        name = item.removeprefix("-").removeprefix("+")
        if name not in info.columns:
            raise InvalidFilterError(
                f"order_by={item!r}",
                f"{info.model.__name__} has no field {name!r}",
                valid=sorted(info.columns),
            )
        column = getattr(info.model, name)
        clauses.append(column.desc() if item.startswith("-") else column.asc())
    if not any(isinstance(i, str) and i.lstrip("-+") == info.pk_attr for i in items):
        clauses.append(pk.asc())
    return clauses
