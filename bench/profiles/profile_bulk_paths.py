"""Steady workloads to profile the bulk paths not covered by profile_bulk_create.py (PostgreSQL)
and profile_sqlite_bulk_create.py: MariaDB bulk_create, and PostgreSQL bulk_update / soft and
hard bulk_delete by filter (30% of a 100,000-row table, the harness's rows and filter).

    .venv/bin/py-spy record -f raw -r 500 -o /tmp/mariadb.txt -- \\
        .venv/bin/python bench/profiles/profile_bulk_paths.py mariadb_create
    .venv/bin/python bench/profiles/pyspy_shares.py /tmp/mariadb.txt bulk_create
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import (
    SALARY_CUTOFF,
    BenchStaff,
    BenchUser,
    fresh_table,
    generate_rows,
)
from alternatives.postgresql import RawAsyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, EventBus, create_engine
from baserepo.testing import ensure_database

POSTGRESQL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
MARIADB = "mysql+asyncmy://root@127.0.0.1:3306/baserepo_bench?charset=utf8mb4"
RUNS = 5
FILTER = {"salary__lt": SALARY_CUTOFF}


async def mariadb_create(rows: int) -> None:
    await ensure_database(MARIADB)
    engine = create_engine(MARIADB)
    try:
        for run in range(RUNS):
            await fresh_table(engine, BenchUser)
            records = generate_rows(rows, f"m{run}")
            async with AsyncSession(engine, expire_on_commit=False) as session:
                repo = BaseRepository(BenchUser, session, event_bus=EventBus())
                start = time.perf_counter()
                result = await repo.bulk_create(records)
                rate = result.success_count / (time.perf_counter() - start)
                print(f"bulk_create {rate:,.0f} rows/s")
    finally:
        await engine.dispose()


async def _load_staff(engine: AsyncEngine, rows: int, tag: str) -> None:
    await fresh_table(engine, BenchStaff)
    raw = RawAsyncpg(await asyncpg.connect(POSTGRESQL.replace("+asyncpg", "")))
    try:
        await raw.copy_quietly(generate_rows(rows, tag), BenchStaff.__tablename__)
        await raw.analyze(BenchStaff.__tablename__)
    finally:
        await raw.conn.close()


async def postgresql_change(rows: int) -> None:
    await ensure_database(POSTGRESQL)
    engine = create_engine(POSTGRESQL)
    try:
        for run in range(RUNS):
            for call in ("update", "soft delete", "hard delete"):
                await _load_staff(engine, rows, f"c{run}")
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    repo = BaseRepository(BenchStaff, session, event_bus=EventBus())
                    start = time.perf_counter()
                    if call == "update":
                        result = await repo.bulk_update(
                            {"salary__lt": SALARY_CUTOFF}, {"is_active": False}
                        )
                    else:
                        result = await repo.bulk_delete(FILTER, soft_delete=call == "soft delete")
                    rate = result.success_count / (time.perf_counter() - start)
                print(f"{call}: {rate:,.0f} rows/s")
    finally:
        await engine.dispose()


WORKLOADS = {"mariadb_create": mariadb_create, "postgresql_change": postgresql_change}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--rows", type=int, default=100_000)
    arguments = parser.parse_args()
    asyncio.run(WORKLOADS[arguments.workload](arguments.rows))
