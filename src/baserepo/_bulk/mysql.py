"""MariaDB/MySQL: ``INSERT IGNORE ... RETURNING`` (MariaDB 10.5+).

``ON DUPLICATE KEY UPDATE id = id`` would return the existing rows as well, so skipped
records could not be told apart; ``INSERT IGNORE`` returns only the rows it inserted. IGNORE
also downgrades other errors to warnings, which is why records are validated (NOT NULL,
type, string length) before they reach this statement.
"""

from __future__ import annotations

from sqlalchemy import Insert, Table, insert

from ._insert import ExecutemanyInsert

MAX_PARAMETERS = 60_000


def _insert_ignoring_conflicts(table: Table) -> Insert:
    return insert(table).prefix_with("IGNORE", dialect="mysql")


def insert_strategy() -> ExecutemanyInsert:
    return ExecutemanyInsert(
        MAX_PARAMETERS,
        _insert_ignoring_conflicts,
        keys_follow_row_order=True,
        limited_subquery_changes=False,
    )
