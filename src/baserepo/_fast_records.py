"""The bulk path's first look at a whole batch, a column at a time.

``RecordPreparer.for_create`` checks a record column by column through closures and builds
messages for whatever is wrong; at a million records that was a fifth of ``bulk_create``.
Almost every batch is fine, and then it is cheaper to ask each column once
(``{str}.issuperset(map(type, column))``, ``max(map(len, column)) <= 100``: loops that run in
C) than each value. The quick look accepts a strict subset of what ``for_create`` accepts
(dicts with the same keys, exact types, no conversions) and answers None for anything else;
such a batch goes record by record through ``for_create``, which has the last word and the
error messages. For a batch both accept, both give the same rows.

The columns it had to build anyway ride along with the rows (``PreparedRows.columns``), so the
insert strategy does not build them a second time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import types

from ._records import integer_bounds

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy import Column

    from ._model import ModelInfo
    from ._records import Check

__all__ = ["PreparedRows", "QuickBatchCheck"]

_NoneType = type(None)


class PreparedRows(list[dict[str, Any]]):
    """Rows that all have the same keys, with their values also as columns."""

    keys: tuple[str, ...]
    columns: list[list[Any]]


class QuickBatchCheck:
    """``check(batch)``: the batch's rows if every record is surely fine, else None."""

    def __init__(self, info: ModelInfo, checks: dict[str, Check]) -> None:
        self._known = frozenset(info.columns)
        self._required = frozenset(info.required)
        self._pk = info.pk_attr
        self._pk_has_python_default = info.pk_column.default is not None
        self._column_checks = {
            attr: _column_check(column, checks[attr], nullable=attr == info.pk_attr)
            for attr, column in info.columns.items()
        }

    def __call__(self, batch: Sequence[Any]) -> PreparedRows | None:
        if not batch or type(batch[0]) is not dict:
            return None
        keys = tuple(batch[0])
        if not (self._known.issuperset(keys) and self._required.issubset(keys)):
            return None
        # Same length and every key present (itemgetter raises otherwise) = same keys.
        if set(map(type, batch)) != {dict} or set(map(len, batch)) != {len(keys)}:
            return None
        try:
            # Column by column: no tuple per row, so nothing for the garbage collector to
            # chase (a tuple per row made gen-2 collections a fifth of bulk_create's time).
            columns = [list(map(itemgetter(key), batch)) for key in keys]
        except KeyError:
            return None
        for key, column in zip(keys, columns, strict=True):
            if not self._column_checks[key](column):
                return None
        pk_given = self._pk in keys
        if pk_given or self._pk_has_python_default:
            # Rows we change (a None key dropped, a key filled in) must be our own copies.
            rows = PreparedRows(map(dict, batch))
        else:
            # Nobody changes these rows, so the caller's dicts serve as they are: a copy of
            # each was an eighth of bulk_create's time.
            rows = PreparedRows(batch)
        if pk_given:
            position = keys.index(self._pk)
            if any(value is not None for value in columns[position]):
                if None in columns[position]:
                    return None  # some keys given, some not: for_create sorts them out
            else:
                # None keys mean "let the database choose", as in for_create.
                for row in rows:
                    del row[self._pk]
                keys = keys[:position] + keys[position + 1 :]
                del columns[position]
        rows.keys = keys
        rows.columns = columns
        return rows


def _column_check(
    column: Column[Any], check: Check, *, nullable: bool
) -> Callable[[Sequence[Any]], bool]:
    """A test of a whole column of values, true only if ``check`` accepts each of them."""
    nullable = nullable or bool(column.nullable)
    sql_type = column.type
    exact = _exact_type(sql_type)
    if exact is None:

        def one_by_one(values: Sequence[Any]) -> bool:
            if not nullable and None in values:
                return False
            return all(check(value) is None for value in values if value is not None)

        return one_by_one
    accepted = {exact, _NoneType} if nullable else {exact}
    if isinstance(sql_type, types.String) and sql_type.length is not None:
        length = sql_type.length

        def strings(values: Sequence[Any]) -> bool:
            return accepted.issuperset(map(type, values)) and (
                max(map(len, filter(None, values)), default=0) <= length
            )

        return strings
    if isinstance(sql_type, types.Integer):
        low, high = integer_bounds(sql_type)

        def integers(values: Sequence[Any]) -> bool:
            found = set(map(type, values))
            if not accepted.issuperset(found):
                return False
            numbers = [v for v in values if v is not None] if _NoneType in found else values
            return not numbers or (low <= min(numbers) and max(numbers) <= high)

        return integers
    return lambda values: accepted.issuperset(map(type, values))


def _exact_type(sql_type: types.TypeEngine[Any]) -> type | None:
    """The one Python type whose values ``for_create`` surely accepts for this column."""
    if isinstance(
        sql_type,
        types.TypeDecorator | types.JSON | types.ARRAY | types.PickleType | types.Enum,
    ):
        return None
    for sql_class, python_type in _EXACT:
        if isinstance(sql_type, sql_class):
            return python_type
    return None


_EXACT: tuple[tuple[type[types.TypeEngine[Any]], type], ...] = (
    (types.Boolean, bool),
    (types.String, str),
    (types.Integer, int),
    (types.DateTime, dt.datetime),
    (types.Date, dt.date),
    (types.Time, dt.time),
    (types.Interval, dt.timedelta),
    (types.Uuid, uuid.UUID),
)
