"""Where COPY starts to beat the array statement on PostgreSQL: bulk_create of one batch of
n rows (the harness's users) both ways, alternating, median of --repeat runs. The printed table
is the one behind ``copy_min_rows`` of the asyncpg bulk dialect
(src/baserepo/_bulk/postgresql_asyncpg.py, docs/performance.md).

The one benchmark that reaches into the library: no public setting picks the statement, so it
sets ``copy_min_rows``, the documented knob of the engine's own bulk dialect
(``baserepo._bulk.bulk_dialect_for``), for each way. No module-level constant is patched; the
knob lives on the one bulk dialect of this engine, so other engines are untouched.

    .venv/bin/python bench/probes/copy_threshold.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, drop_tables, fresh_table, generate_rows
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from baserepo.testing import ensure_database

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_000)
WAYS = {"arrays": 10**9, "COPY": 1}
"""The smallest batch that goes by COPY, per way (patched in for the run)."""


def set_copy_min_rows(engine: AsyncEngine, rows: int) -> None:
    bulk = bulk_dialect_for(engine.sync_engine.dialect)  # the engine is connected by now
    if not isinstance(bulk, AsyncpgPostgresqlDialect):
        raise SystemExit(f"{URL} did not get the asyncpg bulk dialect (COPY): {bulk!r}")
    bulk.copy_min_rows = rows


async def one_call(session: AsyncSession, rows: int, tag: str) -> float:
    repo = BaseRepository(BenchUser, session)
    data = generate_rows(rows, tag)
    start = time.perf_counter()
    result = await repo.bulk_create(data, batch_size=rows)
    seconds = time.perf_counter() - start
    if result.success_count != rows:
        raise RuntimeError(result.errors[:3])
    return seconds


async def main(repeat: int) -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    timings: dict[tuple[int, str], list[float]] = {}
    try:
        await fresh_table(engine, BenchUser)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            for run in range(repeat):
                for size in SIZES:
                    for way, threshold in WAYS.items():
                        set_copy_min_rows(engine, threshold)
                        seconds = await one_call(session, size, f"{way}{run}.{size}")
                        timings.setdefault((size, way), []).append(seconds)
        await drop_tables(engine)
    finally:
        await engine.dispose()
    print(f"bulk_create of one batch on PostgreSQL, median of {repeat}")
    print(f"{'rows':>6} {'arrays rows/s':>14} {'COPY rows/s':>12} {'COPY/arrays':>12}")
    for size in SIZES:
        arrays, copy = (size / statistics.median(timings[(size, way)]) for way in WAYS)
        print(f"{size:>6} {arrays:>14,.0f} {copy:>12,.0f} {copy / arrays:>12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    asyncio.run(main(parser.parse_args().repeat))
