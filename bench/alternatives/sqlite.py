"""Raw SQLite inserts: the standard library's ``sqlite3`` and ``aiosqlite``, ``executemany``.

Both store ``created_at`` as the ISO text SQLAlchemy's SQLite ``DateTime`` writes, so every
method does the same conversion work (and nothing relies on sqlite3's deprecated adapters).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import aiosqlite

from .data import COLUMNS, BenchUser, Clock, Outcome

if TYPE_CHECKING:
    from pathlib import Path

TABLE = BenchUser.__tablename__
INSERT_SQL = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)"


def _tuples(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["name"],
            r["email"],
            r["department"],
            r["salary"],
            r["is_active"],
            r["created_at"].isoformat(" ", "microseconds"),
        )
        for r in rows
    ]


class RawSqlite:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sync: sqlite3.Connection | None = None
        self.aio: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.sync = sqlite3.connect(self.path)
        self.aio = await aiosqlite.connect(self.path)

    async def close(self) -> None:
        if self.aio is not None:
            await self.aio.close()
        if self.sync is not None:
            self.sync.close()

    async def sqlite3_executemany(self, rows: list[dict[str, Any]]) -> Outcome:
        """Blocking ``sqlite3`` (the event loop waits): the floor for SQLite from Python."""
        assert self.sync is not None
        with Clock() as clock:
            self.sync.executemany(INSERT_SQL, _tuples(rows))
            self.sync.commit()
        return Outcome(clock.seconds, len(rows), None)

    async def aiosqlite_executemany(self, rows: list[dict[str, Any]]) -> Outcome:
        """``aiosqlite`` (the driver baserepo runs on), one ``executemany`` + commit."""
        assert self.aio is not None
        with Clock() as clock:
            await self.aio.executemany(INSERT_SQL, _tuples(rows))
            await self.aio.commit()
        return Outcome(clock.seconds, len(rows), None)

    async def count(self) -> int:
        assert self.aio is not None
        async with self.aio.execute(f"SELECT count(*) FROM {TABLE}") as cursor:
            found = await cursor.fetchone()
        assert found is not None
        return int(found[0])

    async def emails_of(self, ids: list[int]) -> dict[int, str]:
        assert self.aio is not None
        async with self.aio.execute(f"SELECT id, email FROM {TABLE}") as cursor:
            found = {int(i): str(e) for i, e in await cursor.fetchall()}
        return {i: found[i] for i in ids if i in found}
