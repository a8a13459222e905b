"""bulk_upsert on PostgreSQL: 10,000 rows of which half already exist (with other values), so
half are inserted and half updated, against ``bulk_create`` of the same rows into an empty
table, advanced-alchemy's ``upsert_many`` and a raw SQLAlchemy Core ``insert().on_conflict_do_
update()`` executemany. Median of ``--repeat`` runs, each on a fresh table, method order
rotated. ``issue12.py`` prints these figures with the per-row update ones in one table (the one
the docs quote).

    .venv/bin/python bench/scenarios/upsert.py [--rows 10000] [--repeat 5]

Needs the ``bench`` extra (advanced-alchemy). The database: BASEREPO_BENCH_POSTGRESQL_URL, else
postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from alternatives.data import BenchUser, fresh_table, generate_rows
from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
BAR_VS_CREATE = 0.5
"""The issue's bar: bulk_upsert at >= 0.5x bulk_create's rows/s on the same rows."""


class _Repository(SQLAlchemyAsyncRepository[BenchUser]):
    model_type = BenchUser


def upsert_rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows; the first half exist before the call, with another salary."""
    return generate_rows(count, "upsert")


async def seed_half(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    await fresh_table(engine, BenchUser)
    existing = [{**r, "salary": r["salary"] - 1} for r in rows[: len(rows) // 2]]
    async with engine.begin() as conn:
        await conn.execute(insert(BenchUser.__table__), existing)


async def run_bulk_create(engine: AsyncEngine, rows: list[dict[str, Any]]) -> float:
    await fresh_table(engine, BenchUser)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        start = time.perf_counter()
        result = await BaseRepository(BenchUser, session).bulk_create(rows, emit_events=False)
        seconds = time.perf_counter() - start
    assert len(result.created_ids) == len(rows)
    return seconds


async def run_bulk_upsert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> float:
    await seed_half(engine, rows)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        start = time.perf_counter()
        result = await BaseRepository(BenchUser, session).bulk_upsert(
            rows, unique_fields="email", emit_events=False
        )
        seconds = time.perf_counter() - start
    half = len(rows) // 2
    assert (len(result.updated_ids), len(result.created_ids)) == (half, len(rows) - half)
    return seconds


async def run_upsert_many(engine: AsyncEngine, rows: list[dict[str, Any]]) -> float:
    await seed_half(engine, rows)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        start = time.perf_counter()
        done = await _Repository(session=session).upsert_many(
            [BenchUser(**r) for r in rows], match_fields=["email"], auto_commit=True
        )
        ids = [o.id for o in done]
        seconds = time.perf_counter() - start
    assert len(ids) == len(rows)
    return seconds


async def run_core(engine: AsyncEngine, rows: list[dict[str, Any]]) -> float:
    await seed_half(engine, rows)
    table = BenchUser.__table__
    statement = postgresql.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.email],
        set_={k: statement.excluded[k] for k in rows[0] if k != "email"},
    ).returning(table.c.id)
    async with engine.connect() as conn:
        start = time.perf_counter()
        async with conn.begin():
            ids = list((await conn.execute(statement, rows)).scalars())
        seconds = time.perf_counter() - start
    assert len(ids) == len(rows)
    return seconds


METHODS = {
    "baserepo bulk_create (empty table)": run_bulk_create,
    "baserepo bulk_upsert": run_bulk_upsert,
    "advanced-alchemy upsert_many": run_upsert_many,
    "SQLAlchemy Core on_conflict_do_update": run_core,
}


CREATE = "baserepo bulk_create (empty table)"
UPSERT = "baserepo bulk_upsert"
UPSERT_MANY = "advanced-alchemy upsert_many"


async def measure(count: int, repeat: int) -> dict[str, float]:
    """Median seconds of each method over ``repeat`` rounds (method order rotated)."""
    await ensure_database(URL)
    engine = create_engine(URL)
    rows = upsert_rows(count)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    try:
        names = list(METHODS)
        for run in range(repeat):
            for name in names[run % len(names) :] + names[: run % len(names)]:
                times[name].append(await METHODS[name](engine, [dict(r) for r in rows]))
        async with engine.connect() as conn:  # the last method's table: every row there
            assert await conn.scalar(select(func.count()).select_from(BenchUser)) == count
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: BenchUser.__table__.drop(sync, checkfirst=True))
    finally:
        await engine.dispose()
    return {name: statistics.median(ts) for name, ts in times.items()}


def bars(rate: dict[str, float]) -> list[tuple[str, float, bool]]:
    """The issue's bulk_upsert bars: (what, measured ratio, met)."""
    vs_create = rate[UPSERT] / rate[CREATE]
    vs_many = rate[UPSERT] / rate[UPSERT_MANY]
    return [
        (f"bulk_upsert >= {BAR_VS_CREATE}x bulk_create", vs_create, vs_create >= BAR_VS_CREATE),
        ("bulk_upsert faster than upsert_many", vs_many, vs_many > 1),
    ]


async def main(count: int, repeat: int) -> None:
    rate = {name: count / seconds for name, seconds in (await measure(count, repeat)).items()}
    create, upsert = rate[CREATE], rate[UPSERT]
    print(f"PostgreSQL, {count:,} rows, half of them existing (updated), median of {repeat}")
    print(f"{'method':<40}  {'rows/s':>9}  {'x bulk_create':>13}  {'bulk_upsert/this':>16}")
    print(f"{'-' * 40}  {'-' * 9}  {'-' * 13}  {'-' * 16}")
    for name, value in rate.items():
        print(f"{name:<40}  {value:>9,.0f}  {value / create:>12.2f}x  {upsert / value:>15.2f}x")
    for what, ratio, met in bars(rate):
        print(f"bar: {what}: {ratio:.2f}x {'PASS' if met else 'FAIL'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.repeat))
