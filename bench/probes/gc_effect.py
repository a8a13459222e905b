"""Does the garbage collector slow bulk_create down? 100,000 records (the harness's users) into
PostgreSQL with the collector on and off, alternating, median of --repeat runs; the caller's
own records stay alive meanwhile, as in an application. Quoted in docs/performance.md.

    .venv/bin/python bench/probes/gc_effect.py [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, drop_tables, fresh_table, generate_rows
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"


async def one_call(engine: object, rows: int, tag: str, *, collector: bool) -> float:
    records = generate_rows(rows, tag)
    await fresh_table(engine, BenchUser)  # type: ignore[arg-type]
    gc.collect()
    async with AsyncSession(engine, expire_on_commit=False) as session:  # type: ignore[call-overload]
        repo = BaseRepository(BenchUser, session)
        await session.connection()
        await session.commit()
        if not collector:
            gc.disable()
        try:
            start = time.perf_counter()
            result = await repo.bulk_create(records)
            seconds = time.perf_counter() - start
        finally:
            gc.enable()
    if result.success_count != rows:
        raise RuntimeError(result.errors[:3])
    return rows / seconds


async def main(rows: int, repeat: int) -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        for run in range(repeat):
            # Alternate which goes first, so neither profits from the order.
            for collector in (True, False) if run % 2 == 0 else (False, True):
                rate = await one_call(engine, rows, f"gc{run}{collector}", collector=collector)
                rates[collector].append(rate)
        await drop_tables(engine)
    finally:
        await engine.dispose()
    on, off = (statistics.median(rates[flag]) for flag in (True, False))
    print(f"bulk_create of {rows:,} records, median of {repeat}")
    print(f"garbage collector on : {on:>9,.0f} rows/s")
    print(f"garbage collector off: {off:>9,.0f} rows/s  (off/on {off / on:.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.repeat))
