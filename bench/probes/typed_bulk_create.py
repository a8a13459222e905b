"""bulk_create on PostgreSQL with a pydantic create schema, side by side with plain mappings.

    .venv/bin/python bench/probes/typed_bulk_create.py             # 10,000 rows, median of 5
    .venv/bin/python bench/probes/typed_bulk_create.py --quick     # median of 3
    .venv/bin/python bench/probes/typed_bulk_create.py --rows 100000 --repeat 3

Three ways to hand the harness's rows (``alternatives/data.py``) to one ``bulk_create``:

* ``mappings``: the dicts, no schema (the path of the published figures);
* ``schema + dicts``: the same dicts, the repository built with ``create_schema=`` (each
  record validated by the schema);
* ``schema instances``: already-built instances of the schema (built before the clock starts).

Each call gets a freshly created table, a CHECKPOINT and an open connection; the methods run
in an order rotated on every repetition; each figure is the median. The ratio column is
rows/s against ``mappings`` in the same run (the issue's bar: >= 0.6x).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime  # noqa: TC003 - pydantic reads the annotation at runtime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, fresh_table, generate_rows
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncEngine

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_typed_bench"
"""A database of its own: the harness and other scripts drop and create bench_users in
baserepo_bench, so a run beside one of them would lose its table midway."""


class BenchUserCreate(BaseModel):
    """What an application would declare for the harness's rows."""

    name: str
    email: str
    department: str | None = None
    salary: int | None = None
    is_active: bool = True
    created_at: datetime


async def timed(engine: AsyncEngine, records: Sequence[Any], schema: type[Any] | None) -> float:
    """rows/s of one bulk_create of ``records`` into a fresh table."""
    await fresh_table(engine, BenchUser)
    async with engine.connect() as conn:
        await conn.execute(text("CHECKPOINT"))
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(BenchUser, session, create_schema=schema)
        await session.connection()  # connect before the clock starts
        await session.commit()
        start = time.perf_counter()
        result = await repo.bulk_create(records)
        seconds = time.perf_counter() - start
    if result.success_count != len(records):
        raise SystemExit(f"wrote {result.success_count} of {len(records)}: {result.errors[:3]}")
    return len(records) / seconds


async def main(rows: int, repeat: int) -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    mappings = generate_rows(rows, "typed")
    instances = [BenchUserCreate(**row) for row in mappings]
    methods: dict[str, tuple[Sequence[Any], type[Any] | None]] = {
        "mappings": (mappings, None),
        "schema + dicts": (mappings, BenchUserCreate),
        "schema instances": (instances, BenchUserCreate),
    }
    rates: dict[str, list[float]] = {name: [] for name in methods}
    try:
        for records, schema in methods.values():  # warm-up: statement caches, imports
            await timed(engine, records[:1_000], schema)
        names = list(methods)
        for round_ in range(repeat):
            for name in names[round_ % 3 :] + names[: round_ % 3]:
                records, schema = methods[name]
                rates[name].append(await timed(engine, records, schema))
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: BenchUser.__table__.drop(sync))
    finally:
        await engine.dispose()
    base = statistics.median(rates["mappings"])
    print(f"bulk_create of {rows:,} rows on PostgreSQL, median of {repeat}")
    print(f"{'method':<18}{'rows/s':>10}{'x mappings':>12}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:<18}{rate:>10,.0f}{rate / base:>11.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="median of 3")
    args = parser.parse_args()
    asyncio.run(main(args.rows, 3 if args.quick else args.repeat))
