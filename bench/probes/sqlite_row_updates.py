"""bulk_update_rows on SQLite: a CASE per column against a joined VALUES table, and how many rows
one VALUES statement should carry (``VALUES_MAX_ROWS`` in src/baserepo/_bulk/values_rows.py,
docs/bulk-operations.md "bulk_update_rows").

1. SQLite's own work (stdlib sqlite3, no baserepo, no SQLAlchemy): 10,000 rows of a table like
   the bench's each get their own two values, in one transaction, as ``UPDATE ... SET c = CASE
   WHEN id = ? THEN ? ... END WHERE id IN (...) RETURNING id`` statements of 500 rows (the old
   form) and as ``WITH v(k, s, d) AS (VALUES ...) UPDATE ... FROM v ... RETURNING id``
   statements of 500 / 2,000 / 10,000 rows.
2. The library's call: ``bulk_update_rows`` of the same 10,000 rows with ``VALUES_MAX_ROWS`` set
   to 500 / 2,000 / 5,000 (the module constant, read at each call), from the list of rows to
   the last commit.

Median of --repeat runs each.

    .venv/bin/python bench/probes/sqlite_row_updates.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, String, delete, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import baserepo._bulk.values_rows as values_rows
from baserepo import BaseRepository, create_engine

ROWS = 10_000
FILE = Path(tempfile.gettempdir()) / "baserepo_probe_sqlite_row_updates.sqlite3"


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "probe_row_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    salary: Mapped[int] = mapped_column(Integer)
    department: Mapped[str] = mapped_column(String(50))


def new_values(run: int) -> list[tuple[int, int, str]]:
    return [(key, key * 2 + run, f"dep{key}-{run}") for key in range(1, ROWS + 1)]


def seed(connection: sqlite3.Connection) -> None:
    connection.execute("DELETE FROM probe_row_updates")
    connection.executemany(
        "INSERT INTO probe_row_updates VALUES (?, ?, ?, ?)",
        [(key, f"n{key}", key, "d") for key in range(1, ROWS + 1)],
    )


def case_statement(batch: list[tuple[int, int, str]]) -> tuple[str, list[Any]]:
    whens = " ".join("WHEN id = ? THEN ?" for _ in batch)
    sql = (
        f"UPDATE probe_row_updates SET salary = CASE {whens} ELSE salary END, "
        f"department = CASE {whens} ELSE department END "
        f"WHERE id IN ({', '.join('?' * len(batch))}) RETURNING id"
    )
    parameters: list[Any] = [v for key, salary, _ in batch for v in (key, salary)]
    parameters += [v for key, _, department in batch for v in (key, department)]
    return sql, parameters + [key for key, _, _ in batch]


def values_statement(batch: list[tuple[int, int, str]]) -> tuple[str, list[Any]]:
    sql = (
        f"WITH v(k, s, d) AS (VALUES {', '.join('(?, ?, ?)' for _ in batch)}) "
        "UPDATE probe_row_updates SET salary = v.s, department = v.d FROM v "
        "WHERE probe_row_updates.id = v.k RETURNING probe_row_updates.id"
    )
    return sql, [v for row in batch for v in row]


def time_raw(form: str, size: int, run: int) -> float:
    connection = sqlite3.connect(FILE, isolation_level=None)
    try:
        connection.execute("BEGIN")
        seed(connection)
        connection.execute("COMMIT")
        rows = new_values(run)
        build = case_statement if form == "CASE" else values_statement
        statements = [build(rows[i : i + size]) for i in range(0, ROWS, size)]
        start = time.perf_counter()
        connection.execute("BEGIN")
        changed = sum(len(connection.execute(s, p).fetchall()) for s, p in statements)
        connection.execute("COMMIT")
        elapsed = time.perf_counter() - start
        check = connection.execute("SELECT salary FROM probe_row_updates WHERE id = 7").fetchone()
    finally:
        connection.close()
    if changed != ROWS or check != (7 * 2 + run,):
        raise SystemExit(f"{form} {size}: changed {changed}, row 7 holds {check}")
    return elapsed


async def time_call(max_rows: int, run: int) -> float:
    values_rows.VALUES_MAX_ROWS = max_rows
    engine = create_engine(f"sqlite+aiosqlite:///{FILE}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(delete(Row))
            await conn.execute(
                insert(Row),
                [
                    {"id": k, "name": f"n{k}", "salary": k, "department": "d"}
                    for k in range(1, ROWS + 1)
                ],
            )
        rows = [{"id": k, "salary": s, "department": d} for k, s, d in new_values(run)]
        async with AsyncSession(engine, expire_on_commit=False) as session:
            start = time.perf_counter()
            result = await BaseRepository(Row, session).bulk_update_rows(rows, emit_events=False)
            elapsed = time.perf_counter() - start
    finally:
        await engine.dispose()
    if result.success_count != ROWS:
        raise SystemExit(f"bulk_update_rows changed {result.success_count} of {ROWS}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    FILE.unlink(missing_ok=True)
    asyncio.run(time_call(values_rows.VALUES_MAX_ROWS, 0))  # creates the table, warms imports
    print(f"SQLite, {ROWS:,} rows each given two values of their own, median of {repeat}")
    print("1. SQLite's own work (sqlite3), one transaction")
    print(f"   {'form':<6} {'rows/statement':>14} {'seconds':>8}")
    for form, size in (("CASE", 500), ("VALUES", 500), ("VALUES", 2_000), ("VALUES", 10_000)):
        median = statistics.median(time_raw(form, size, run) for run in range(1, repeat + 1))
        print(f"   {form:<6} {size:>14,} {median:>8.3f}")
    print("2. bulk_update_rows (aiosqlite, a commit per statement)")
    print(f"   {'VALUES_MAX_ROWS':>15} {'seconds':>8}")
    for max_rows in (500, 2_000, 5_000):
        runs = [asyncio.run(time_call(max_rows, run)) for run in range(1, repeat + 1)]
        print(f"   {max_rows:>15,} {statistics.median(runs):>8.3f}")
    FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
