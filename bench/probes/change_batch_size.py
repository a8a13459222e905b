"""bulk_update / bulk_delete (soft, hard) against the single Core statement with
``RETURNING id``, for several batch sizes: ~30% of a PostgreSQL table (``salary < 48000``,
the harness's rows and filter), the table ANALYZEd and checkpointed before each timed call as
autovacuum and the harness would. Median of ``--repeat`` runs, methods interleaved. The
figures behind DEFAULT_CHANGE_BATCH_SIZE in docs/performance.md.

    .venv/bin/python bench/probes/change_batch_size.py
    .venv/bin/python bench/probes/change_batch_size.py \\
        --tables 100000 --batches 10000,50000 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import (
    COLUMNS,
    SALARY_CUTOFF,
    as_tuple,
    drop_tables,
    fresh_table,
    generate_rows,
)
from alternatives.data import BenchStaff as Staff
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, EventBus, create_engine
from baserepo.testing import ensure_database

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
RAW_URL = "postgresql://postgres@127.0.0.1:5432/baserepo_bench"
CHANGES = ("update", "soft delete", "hard delete")


Timed = Callable[[], Awaitable[int]]


def core(engine: AsyncEngine, change: str) -> Timed:
    where = (Staff.salary < SALARY_CUTOFF, Staff.deleted_at.is_(None))
    statement: Any
    if change == "update":
        statement = update(Staff).where(*where).values(is_active=False)
    elif change == "soft delete":
        statement = update(Staff).where(*where).values(deleted_at=datetime.now())
    else:
        statement = delete(Staff).where(*where)

    async def run() -> int:
        async with engine.connect() as conn:
            ids = list((await conn.execute(statement.returning(Staff.id))).scalars())
            await conn.commit()
        return len(ids)

    return run


def ours(engine: AsyncEngine, change: str, batch_size: int, library: Any = None) -> Timed:
    """``library``: another copy of the baserepo package (change_baseline.py); None: this one."""
    filters = {"salary__lt": SALARY_CUTOFF}
    repository, bus = (
        (BaseRepository, EventBus)
        if library is None
        else (library.BaseRepository, library.EventBus)
    )

    async def run() -> int:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            repo = repository(Staff, session, event_bus=bus())
            if change == "update":
                result = await repo.bulk_update(filters, {"is_active": False}, batch_size)
            else:
                soft = change == "soft delete"
                result = await repo.bulk_delete(filters, soft, batch_size)
        if result.error_count:
            raise RuntimeError(result.errors)
        return result.success_count

    return run


async def measure(
    engine: AsyncEngine, raw: asyncpg.Connection, rows: int, batches: list[int], repeat: int
) -> None:
    records = [as_tuple(r) for r in generate_rows(rows, "change")]
    touched = sum(1 for r in records if r[COLUMNS.index("salary")] < SALARY_CUTOFF)
    for change in CHANGES:
        methods = {"core": core(engine, change)}
        methods.update({f"{b:,}": ours(engine, change, b) for b in batches})
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        for repetition in range(repeat + 1):  # the first round only warms up
            order = list(methods) if repetition % 2 else list(reversed(methods))
            for name in order:
                await fresh_table(engine, Staff)
                await raw.copy_records_to_table(
                    Staff.__tablename__, records=records, columns=COLUMNS
                )
                await raw.execute(f"ANALYZE {Staff.__tablename__}")
                await raw.execute("CHECKPOINT")
                gc.collect()
                started = time.perf_counter()
                changed = await methods[name]()
                elapsed = time.perf_counter() - started
                if changed != touched:
                    raise RuntimeError(f"{change} {name}: {changed} rows, expected {touched}")
                if repetition:
                    seconds[name].append(elapsed)
        base = touched / statistics.median(seconds["core"])
        ratios = "  ".join(
            f"{name:>7} {touched / statistics.median(seconds[name]) / base:.2f}"
            for name in methods
            if name != "core"
        )
        print(
            f"{rows:>9,} rows, {touched:,} touched, {change:<11}: "
            f"core {base:>9,.0f} rows/s; batch {ratios}",
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="100000,500000", help="table sizes, comma list")
    parser.add_argument("--batches", default="1000,10000,20000,50000", help="batch sizes")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    await ensure_database(URL)
    engine = create_engine(URL)
    raw = await asyncpg.connect(RAW_URL)
    try:
        print("rows/s of bulk_update/bulk_delete relative to one Core statement (median)")
        for rows in map(int, args.tables.split(",")):
            batches = [b for b in map(int, args.batches.split(",")) if b * 40 >= rows * 0.3]
            await measure(engine, raw, rows, batches, args.repeat)
        await drop_tables(engine)
    finally:
        await raw.close()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
