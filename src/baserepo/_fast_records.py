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

from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._column_kinds import ColumnKind
    from ._model import ModelInfo

__all__ = ["PreparedRows", "QuickBatchCheck"]

_NoneType = type(None)


class PreparedRows(list[dict[str, Any]]):
    """Rows that all have the same keys, with their values also as columns."""

    keys: tuple[str, ...]
    columns: list[list[Any]]


class QuickBatchCheck:
    """``check(batch)``: the batch's rows if every record is surely fine, else None."""

    def __init__(self, info: ModelInfo, kinds: dict[str, ColumnKind]) -> None:
        self._known = frozenset(info.columns)
        self._required = frozenset(info.required)
        self._pk = info.pk_attr
        self._pk_has_python_default = info.pk_column.default is not None
        self._column_checks = {
            attr: _column_check(kinds[attr], nullable=attr == info.pk_attr or bool(column.nullable))
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


def _column_check(kind: ColumnKind, *, nullable: bool) -> Callable[[Sequence[Any]], bool]:
    """A test of a whole column of values, true only if the kind's ``check`` accepts each of
    them and its ``convert`` leaves each as it is."""
    check, convert, fits = kind.check, kind.convert, kind.fits
    if not kind.exact:

        def one_by_one(values: Sequence[Any]) -> bool:
            if not nullable and None in values:
                return False
            if check is None:
                return True
            present = [value for value in values if value is not None]
            if not all(check(value) is None for value in present):
                return False
            # Conversions make new values: such a column is for_create's to build.
            return convert is None or all(convert(value) is value for value in present)

        return one_by_one
    accepted = kind.exact | {_NoneType} if nullable else kind.exact
    if fits is None:
        return lambda values: accepted.issuperset(map(type, values))

    def exact_and_fitting(values: Sequence[Any]) -> bool:
        found = set(map(type, values))
        if not accepted.issuperset(found):
            return False
        return fits([v for v in values if v is not None] if _NoneType in found else values)

    return exact_and_fitting
