"""SQLite: ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite 3.24+), RETURNING (3.35+)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects import sqlite

from ._insert import ExecutemanyInsert

if TYPE_CHECKING:
    from sqlalchemy import Insert, Table

# SQLITE_MAX_VARIABLE_NUMBER defaults to 32766 since SQLite 3.32.
MAX_PARAMETERS = 32_000


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return sqlite.insert(table).on_conflict_do_nothing()


def insert_strategy() -> ExecutemanyInsert:
    return ExecutemanyInsert(MAX_PARAMETERS, _insert_ignoring_conflicts, keys_follow_row_order=True)
