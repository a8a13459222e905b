"""Inserting one batch of prepared rows and telling which input row got which id: the parts
every bulk dialect shares.

Every dialect returns a list aligned with its input rows: the new primary key, or ``None``
for a row skipped as a unique conflict. Rows are grouped by their key set because one
statement needs the same columns in every row.

Ids are matched to input rows either because we knew them beforehand (keys given in the
records, or a Python-side default evaluated up front) or because the database hands out
increasing integer keys in row order within one statement, the same guarantee SQLAlchemy's
``sort_by_parameter_order`` relies on. With ``ignore_conflicts`` some rows are missing from
RETURNING; they are found by matching inserted rows back on their unique columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Insert, Table, insert

from .._fast_records import PreparedRows
from .._telemetry import note_strategy
from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from .._model import ModelInfo
    from ._key_pool import KeyPool

__all__ = [
    "ExecutemanyInsert",
    "Row",
    "align_returned",
    "fill_client_side_keys",
    "group_by_keys",
    "insert_by_key_set",
    "match_keys",
]

Row = dict[str, Any]


class ExecutemanyInsert:
    """SQLAlchemy's "insertmanyvalues": one cached statement, the rows as parameters."""

    def __init__(
        self,
        max_parameters: int,
        ignoring_insert: Callable[[Table], Insert],
        *,
        keys_follow_row_order: bool = False,
    ) -> None:
        self.max_parameters = max_parameters
        self._ignoring_insert = ignoring_insert
        # True where the database gives autoincrement keys in row order within one multi-row
        # INSERT (the dialect says so): sort_by_parameter_order would make SQLAlchemy fall
        # back to one statement per row there, so the keys are sorted here instead.
        self._keys_follow_row_order = keys_follow_row_order

    def rows_per_statement(self, info: ModelInfo) -> int:
        return max(1, self.max_parameters // max(len(info.columns), 1))

    async def insert(
        self,
        session: AsyncSession,
        info: ModelInfo,
        rows: Sequence[Row],
        *,
        ignore_conflicts: bool,
        key_pool: KeyPool | None = None,  # the database draws the keys
    ) -> list[Any | None]:
        return await insert_by_key_set(
            rows, lambda group: self._insert_group(session, info, group, ignore_conflicts)
        )

    async def _insert_group(
        self, session: AsyncSession, info: ModelInfo, rows: list[Row], ignore_conflicts: bool
    ) -> list[Any | None]:
        note_strategy("executemany")
        table = info.table
        pk_known = keys_are_known(info, rows)
        pk = table.c[info.column_keys[info.pk_attr]]
        if not ignore_conflicts and not self._keys_follow_row_order:
            statement = insert(table).returning(pk, sort_by_parameter_order=True)
            return [r[0] for r in await session.execute(statement, rows)]
        matched = match_keys(info, rows[0]) if ignore_conflicts else []
        plain_or_ignoring = self._ignoring_insert(table) if ignore_conflicts else insert(table)
        statement = plain_or_ignoring.returning(pk, *(table.c[k] for k in matched))
        returned = [tuple(r) for r in await session.execute(statement, rows)]
        return align_returned(info, rows, returned, matched, pk_known=pk_known)


async def insert_by_key_set(
    rows: Sequence[Row], insert_group: Callable[[list[Row]], Awaitable[list[Any | None]]]
) -> list[Any | None]:
    """Run ``insert_group`` once per key set (one statement needs the same columns in every
    row) and put the ids back in input order; a batch of one key set, the usual one, gets
    its group's ids as they are."""
    groups = group_by_keys(rows)
    if len(groups) == 1:
        return await insert_group(groups[0][1])
    ids: list[Any | None] = [None] * len(rows)
    for positions, group in groups:
        group_ids = await insert_group(group)
        for position, new_id in zip(positions, group_ids, strict=True):
            ids[position] = new_id
    return ids


def keys_are_known(info: ModelInfo, rows: list[Row]) -> bool:
    """True when every row carries its key; raises when ids could not be matched at all."""
    pk_key = info.column_keys[info.pk_attr]
    if all(pk_key in row for row in rows) or fill_client_side_keys(info, rows):
        return True
    if not info.pk_is_autoincrement:
        raise ConfigurationError(
            f"{info.model.__name__}: bulk_create needs an integer autoincrement primary key, "
            "a key given in each record, or a Python-side default for the key"
        )
    return False


def fill_client_side_keys(info: ModelInfo, rows: list[Row]) -> bool:
    """Compute Python-side primary key defaults (``default=uuid.uuid4``) up front."""
    default = info.pk_column.default
    if default is None or not (default.is_scalar or default.is_callable):
        return False
    pk_key = info.column_keys[info.pk_attr]
    value = default.arg  # type: ignore[attr-defined]
    for row in rows:
        if pk_key not in row:
            row[pk_key] = value(None) if default.is_callable else value
    return True


def group_by_keys(rows: Sequence[Row]) -> list[tuple[list[int], list[Row]]]:
    if not rows:
        return []
    if isinstance(rows, PreparedRows):  # checked by the quick look: one key set
        return [(list(range(len(rows))), rows)]
    keys = rows[0].keys()
    if all(row.keys() == keys for row in rows):  # the usual case, without a set per row
        return [(list(range(len(rows))), list(rows))]
    groups: dict[frozenset[str], tuple[list[int], list[Row]]] = {}
    for position, row in enumerate(rows):
        positions, members = groups.setdefault(frozenset(row), ([], []))
        positions.append(position)
        members.append(row)
    return list(groups.values())


def match_keys(info: ModelInfo, sample: Row) -> list[str]:
    """Column keys besides the primary key that decide a conflict and that the rows carry."""
    pk_key = info.column_keys[info.pk_attr]
    keys: list[str] = []
    for group in info.unique_groups:
        for attr in group:
            key = info.column_keys[attr]
            if key in sample and key != pk_key and key not in keys:
                keys.append(key)
    return keys


def align_returned(
    info: ModelInfo,
    rows: list[Row],
    returned: list[tuple[Any, ...]],
    matched: list[str],
    *,
    pk_known: bool,
) -> list[Any | None]:
    """Ids aligned with ``rows`` from RETURNING ``(pk, *matched)`` rows of the inserted ones."""
    pk_key = info.column_keys[info.pk_attr]
    if pk_known:
        if len(returned) == len(rows):
            return [row[pk_key] for row in rows]
        return _align_unordered(rows, returned, [pk_key, *matched])
    returned.sort(key=lambda r: r[0])
    if len(returned) == len(rows):
        return [r[0] for r in returned]
    return _align_in_order(rows, returned, matched)


def _align_unordered(
    rows: list[Row], returned: list[tuple[Any, ...]], keys: list[str]
) -> list[Any | None]:
    """Match inserted rows, in any order, to the first input row with the same unique values.

    Two input rows equal on every unique column can't both be inserted, and the first one
    wins, so "first unmatched row with these values" is exact.
    """
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


def _align_in_order(
    rows: list[Row], returned: list[tuple[Any, ...]], matched: list[str]
) -> list[Any | None]:
    """Walk input rows and inserted rows (both in insertion order) side by side.

    A skipped row is one whose unique values the next inserted row does not carry.
    """
    ids: list[Any | None] = []
    cursor = 0
    for row in rows:
        if cursor < len(returned) and all(
            returned[cursor][i + 1] == row[key] for i, key in enumerate(matched)
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
