"""Raw MariaDB inserts: ``asyncmy`` ``executemany`` (which it rewrites into multi-row
``INSERT ... VALUES`` statements of up to 1 MB, like PyMySQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncmy

from .data import COLUMNS, BenchUser, Clock, Outcome, as_tuple

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

TABLE = BenchUser.__tablename__
INSERT_SQL = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s)"


class RawAsyncmy:
    def __init__(self, url: URL) -> None:
        self.url = url
        self.conn: Any = None

    async def open(self) -> None:
        self.conn = await asyncmy.connect(
            host=self.url.host,
            port=self.url.port or 3306,
            user=self.url.username,
            password=self.url.password or "",
            database=self.url.database,
            charset="utf8mb4",
        )

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    async def executemany(self, rows: list[dict[str, Any]]) -> Outcome:
        with Clock() as clock:
            async with self.conn.cursor() as cursor:
                await cursor.executemany(INSERT_SQL, list(map(as_tuple, rows)))
            await self.conn.commit()
        return Outcome(clock.seconds, len(rows), None)

    async def count(self) -> int:
        async with self.conn.cursor() as cursor:
            await cursor.execute(f"SELECT count(*) FROM {TABLE}")
            (found,) = await cursor.fetchone()
        await self.conn.commit()  # end the read's snapshot: the next count must see new rows
        return int(found)

    async def emails_of(self, ids: list[int]) -> dict[int, str]:
        async with self.conn.cursor() as cursor:
            await cursor.execute(f"SELECT id, email FROM {TABLE}")
            found = {int(i): str(e) for i, e in await cursor.fetchall()}
        await self.conn.commit()
        return {i: found[i] for i in ids if i in found}
