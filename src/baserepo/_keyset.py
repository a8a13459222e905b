"""Keyset pagination: the order of a page, its opaque cursor, and the "after" condition; no I/O.

A page continues strictly after the last row of the previous one in the page's order, which
always ends with the primary key: so a row is never seen twice nor skipped, whatever is
inserted or deleted between two fetches (a row inserted before the cursor is simply not
reached). The order columns must be NOT NULL: SQL sorts NULL first on some databases and last
on others, and ``x > NULL`` matches nothing, so a NULL would end the walk early.

The cursor is urlsafe base64 of the query spec encoding (``cache/_keys.py``: typed values
survive, a datetime comes back a datetime) of the model, the order and the last row's values,
with a checksum: a damaged cursor, or one made for another model or order, raises
:class:`~baserepo.InvalidCursorError`. It is opaque, not signed: a client that recomputes the
checksum can choose where its walk starts, as it could with an offset.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from sqlalchemy import and_, or_

from ._filter_values import column_filter
from .cache._keys import decode_spec, encode_spec
from .exceptions import InvalidCursorError, InvalidFilterError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement

    from ._model import ModelInfo

__all__ = [
    "Page",
    "after_condition",
    "decode_cursor",
    "encode_cursor",
    "keyset_order",
    "order_terms",
]

ItemT = TypeVar("ItemT")

_CHECKSUM_BYTES = 8


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    """One page of :meth:`BaseRepository.page`."""

    items: list[ItemT]
    """The rows of this page, in the page's order."""
    next_cursor: str | None
    """Pass as ``after=`` for the next page; None: this is the last page."""

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def keyset_order(info: ModelInfo, order_by: str | Sequence[str] | None) -> list[str]:
    """``"-created_at"`` -> ``["-created_at", "id"]``: field names, ``-`` for descending, the
    primary key last (ascending unless named); raises InvalidFilterError for what a cursor
    cannot continue from (an unknown or nullable column, a SQL expression)."""
    items = [order_by] if isinstance(order_by, str) else list(order_by or ())
    order: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidFilterError(
                f"order_by={item!r}", "page() orders by field names ('name', '-created_at')"
            )
        name = item.removeprefix("-").removeprefix("+")
        if name not in info.columns:
            raise InvalidFilterError(
                f"order_by={item!r}",
                f"{info.model.__name__} has no field {name!r}",
                valid=sorted(info.columns),
            )
        if info.columns[name].nullable and name != info.pk_attr:
            raise InvalidFilterError(
                f"order_by={item!r}",
                f"page() cannot order by {name!r}: it may hold NULL, which databases sort "
                "apart and no cursor can continue from",
            )
        order.append(f"-{name}" if item.startswith("-") else name)
        if name == info.pk_attr:
            return order  # unique: anything after it never decides
    return [*order, info.pk_attr]


def order_terms(info: ModelInfo, order: list[str]) -> list[Any]:
    """ORDER BY terms for ``keyset_order``'s list."""
    return [
        getattr(info.model, item[1:]).desc()
        if item.startswith("-")
        else getattr(info.model, item).asc()
        for item in order
    ]


def encode_cursor(info: ModelInfo, order: list[str], last: Any) -> str:
    """The cursor after the row ``last``."""
    values = [getattr(last, item.removeprefix("-")) for item in order]
    body = encode_spec({"model": info.name, "order": order, "after": values})
    checksum = hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES).digest()
    return base64.urlsafe_b64encode(checksum + body).decode().rstrip("=")


def decode_cursor(info: ModelInfo, order: list[str], cursor: str) -> list[Any]:
    """The last row's values a cursor carries, typed for their columns; InvalidCursorError
    when it is damaged or belongs to another model or order."""
    if not isinstance(cursor, str):
        raise InvalidCursorError(f"a cursor is a string, got {type(cursor).__name__}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursorError("the cursor is not one page() made (not base64)") from None
    checksum, body = raw[:_CHECKSUM_BYTES], raw[_CHECKSUM_BYTES:]
    if hashlib.blake2b(body, digest_size=_CHECKSUM_BYTES).digest() != checksum:
        raise InvalidCursorError("the cursor was altered or truncated")
    try:
        spec = decode_spec(body)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise InvalidCursorError("the cursor was altered or truncated") from None
    if spec.get("model") != info.name or spec.get("order") != order:
        raise InvalidCursorError(
            f"the cursor belongs to a page of {spec.get('model')!r} ordered by "
            f"{spec.get('order')!r}, not of {info.name!r} ordered by {order!r}"
        )
    values = spec.get("after")
    if not isinstance(values, list) or len(values) != len(order):
        raise InvalidCursorError("the cursor was altered or truncated")
    typed = []
    for item, value in zip(order, values, strict=True):
        name = item.removeprefix("-")
        if value is None:
            raise InvalidCursorError(f"the cursor holds no value for {name!r}")
        try:
            typed.append(column_filter(info.columns[name]).value(name, value))
        except InvalidFilterError as exc:
            raise InvalidCursorError(f"the cursor's value for {name!r} is not valid") from exc
    return typed


def after_condition(info: ModelInfo, order: list[str], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in ``order``: ``(a > x) OR (a = x AND b > y) OR ...``.

    Spelled out rather than as a row comparison ``(a, b) > (x, y)``, which cannot mix
    directions and which SQLite and MariaDB do not all plan with the index.
    """
    alternatives = []
    for i, item in enumerate(order):
        column = getattr(info.model, item.removeprefix("-"))
        beyond = column < values[i] if item.startswith("-") else column > values[i]
        equal = [
            getattr(info.model, before.removeprefix("-")) == values[j]
            for j, before in enumerate(order[:i])
        ]
        alternatives.append(and_(*equal, beyond) if equal else beyond)
    return or_(*alternatives)
