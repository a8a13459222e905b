"""PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING`` for skipped conflicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects import postgresql

from ._insert import MultiValuesInsert

if TYPE_CHECKING:
    from sqlalchemy import Insert, Table

# asyncpg refuses more than 32767 bind parameters in one statement.
MAX_PARAMETERS = 32_000


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return postgresql.insert(table).on_conflict_do_nothing()


def insert_strategy() -> MultiValuesInsert:
    return MultiValuesInsert(MAX_PARAMETERS, _insert_ignoring_conflicts)
