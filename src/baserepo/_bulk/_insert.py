"""Inserting one batch of prepared rows and telling which input row got which id.

Every strategy returns a list aligned with its input rows: the new primary key, or ``None``
for a row skipped as a unique conflict. Rows are grouped by their key set because one
multi-row statement needs the same columns in every row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Insert, Table, insert

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo

__all__ = ["InsertStrategy", "MultiValuesInsert", "Row"]

Row = dict[str, Any]


class InsertStrategy(Protocol):
    """How one dialect inserts a batch and returns ids aligned with the input rows."""

    max_parameters: int

    async def insert(
        self, session: AsyncSession, info: ModelInfo, rows: Sequence[Row], *, ignore_conflicts: bool
    ) -> list[Any | None]: ...


class MultiValuesInsert:
    """One ``INSERT ... VALUES (...), (...) RETURNING`` statement per key set.

    Ids come back in input order because we either knew them beforehand (client-side keys)
    or the database hands out increasing integers in row order within one statement, which
    is the same guarantee SQLAlchemy's ``sort_by_parameter_order`` relies on.
    """

    def __init__(
        self,
        max_parameters: int,
        ignoring_insert: Callable[[Table], Insert],
    ) -> None:
        self.max_parameters = max_parameters
        self._ignoring_insert = ignoring_insert

    async def insert(
        self, session: AsyncSession, info: ModelInfo, rows: Sequence[Row], *, ignore_conflicts: bool
    ) -> list[Any | None]:
        ids: list[Any | None] = [None] * len(rows)
        for positions, group in _group_by_keys(rows):
            group_ids = await self._insert_group(session, info, group, ignore_conflicts)
            for position, new_id in zip(positions, group_ids, strict=True):
                ids[position] = new_id
        return ids

    async def _insert_group(
        self, session: AsyncSession, info: ModelInfo, rows: list[Row], ignore_conflicts: bool
    ) -> list[Any | None]:
        table = info.table
        pk_key = info.column_keys[info.pk_attr]
        pk_known = all(pk_key in row for row in rows) or _fill_client_side_keys(info, rows)
        if not pk_known and not info.pk_is_autoincrement:
            raise ConfigurationError(
                f"{info.model.__name__}: bulk_create needs an integer autoincrement primary key "
                "or one given in each record (or a Python-side default)"
            )
        match_keys = (
            [k for k in _match_keys(info, rows[0]) if k != pk_key] if ignore_conflicts else []
        )
        statement = self._ignoring_insert(table) if ignore_conflicts else insert(table)
        returned_columns = [table.c[pk_key], *(table.c[k] for k in match_keys)]
        result = await session.execute(statement.values(rows).returning(*returned_columns))
        returned = [tuple(r) for r in result.all()]

        if pk_known:
            if len(returned) == len(rows):
                return [row[pk_key] for row in rows]
            return _align_unordered(rows, returned, [pk_key, *match_keys])
        returned.sort(key=lambda r: r[0])
        if len(returned) == len(rows):
            return [r[0] for r in returned]
        return _align_by_unique_values(rows, returned, [pk_key, *match_keys])


def _fill_client_side_keys(info: ModelInfo, rows: list[Row]) -> bool:
    """Compute Python-side primary key defaults (``default=uuid.uuid4``) up front."""
    default = info.pk_column.default
    if default is None or not (default.is_scalar or default.is_callable):
        return False
    pk_key = info.column_keys[info.pk_attr]
    for row in rows:
        if pk_key not in row:
            row[pk_key] = default.arg(None) if default.is_callable else default.arg  # type: ignore[attr-defined]
    return True


def _align_unordered(
    rows: list[Row], returned: list[tuple[Any, ...]], keys: list[str]
) -> list[Any | None]:
    """Match inserted rows, in any order, to the first input row with the same unique values."""
    waiting: dict[tuple[Any, ...], list[int]] = {}
    for position, row in enumerate(rows):
        waiting.setdefault(tuple(row[k] for k in keys), []).append(position)
    ids: list[Any | None] = [None] * len(rows)
    for values in returned:
        positions = waiting.get(tuple(values))
        if not positions:
            raise RuntimeError("an inserted row matches no input record")
        ids[positions.pop(0)] = values[0]
    return ids


def _group_by_keys(rows: Sequence[Row]) -> list[tuple[list[int], list[Row]]]:
    groups: dict[frozenset[str], tuple[list[int], list[Row]]] = {}
    for position, row in enumerate(rows):
        positions, members = groups.setdefault(frozenset(row), ([], []))
        positions.append(position)
        members.append(row)
    return list(groups.values())


def _match_keys(info: ModelInfo, sample: Row) -> list[str]:
    """Column keys that decide a conflict: every unique-constrained column the rows carry."""
    keys: list[str] = []
    for group in info.unique_groups:
        for attr in group:
            key = info.column_keys[attr]
            if key in sample and key not in keys:
                keys.append(key)
    return keys


def _align_by_unique_values(
    rows: list[Row], returned: list[tuple[Any, ...]], keys: list[str]
) -> list[Any | None]:
    """Walk input and inserted rows (both in insertion order) side by side.

    A skipped row is one whose unique values the next inserted row does not carry. Two
    input rows equal on every unique column can't both be inserted, and the first wins, so
    the greedy walk is exact.
    """
    compared = keys[1:]
    ids: list[Any | None] = []
    cursor = 0
    for row in rows:
        if cursor < len(returned) and all(
            returned[cursor][i + 1] == row[key] for i, key in enumerate(compared)
        ):
            ids.append(returned[cursor][0])
            cursor += 1
        else:
            ids.append(None)
    if cursor != len(returned):
        raise RuntimeError(
            "could not match inserted rows back to their input records; "
            f"{len(returned) - cursor} inserted rows left over"
        )
    return ids
