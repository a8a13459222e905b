"""Where bulk_upsert's staging table starts to beat the ON CONFLICT statement on PostgreSQL:
bulk_upsert of one batch of n rows (the harness's users, half of them existing with another
salary) both ways, alternating, median of --repeat runs. The printed table is the one behind
``stage_min_rows`` of the asyncpg bulk dialect (src/baserepo/_bulk/postgresql_asyncpg.py,
docs/performance.md, "bulk_upsert on PostgreSQL").

Like ``copy_threshold.py``, it sets the documented knob of the engine's own bulk dialect
(``baserepo._bulk.bulk_dialect_for``) for each way; other engines are untouched. The table is
made once and emptied between runs (a fresh table per run would make every statement be
prepared anew after the DDL, which is not what an application sees).

    .venv/bin/python bench/probes/upsert_threshold.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, drop_tables, fresh_table, generate_rows
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from baserepo.testing import ensure_database

URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
SIZES = (10, 100, 500, 1_000, 1_500, 2_000, 3_000, 10_000)
WAYS = {"ON CONFLICT": 10**9, "staged": 1}


def set_stage_min_rows(engine: AsyncEngine, rows: int) -> None:
    bulk = bulk_dialect_for(engine.sync_engine.dialect)  # the engine is connected by now
    if not isinstance(bulk, AsyncpgPostgresqlDialect):
        raise SystemExit(f"{URL} did not get the asyncpg bulk dialect: {bulk!r}")
    bulk.stage_min_rows = rows


async def one_call(engine: AsyncEngine, size: int) -> float:
    rows = generate_rows(size, "upsert")
    async with engine.begin() as conn:
        await conn.execute(delete(BenchUser))
        existing = [{**r, "salary": r["salary"] - 1} for r in rows[: size // 2]]
        await conn.execute(insert(BenchUser), existing)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        start = time.perf_counter()
        result = await BaseRepository(BenchUser, session).bulk_upsert(
            rows, unique_fields="email", emit_events=False
        )
        seconds = time.perf_counter() - start
    assert len(result.updated_ids) == size // 2, result
    return seconds


async def main(repeat: int) -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    timings: dict[tuple[int, str], list[float]] = {}
    try:
        await fresh_table(engine, BenchUser)
        for _ in range(repeat):
            for size in SIZES:
                for way, threshold in WAYS.items():
                    set_stage_min_rows(engine, threshold)
                    seconds = await one_call(engine, size)
                    timings.setdefault((size, way), []).append(seconds)
        await drop_tables(engine)
    finally:
        await engine.dispose()
    print(f"bulk_upsert of one batch on PostgreSQL, half the rows existing, median of {repeat}")
    print(f"{'rows':>6} {'ON CONFLICT ms':>15} {'staged ms':>10} {'staged/ON CONFLICT':>19}")
    for size in SIZES:
        conflict, staged = (statistics.median(timings[(size, way)]) * 1000 for way in WAYS)
        print(f"{size:>6} {conflict:>15.2f} {staged:>10.2f} {staged / conflict:>19.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    asyncio.run(main(parser.parse_args().repeat))
