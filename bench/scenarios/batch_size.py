"""The batch size loop of docs/guide.md, extended: bulk_create rows/s per batch size, relative to
the best size, on PostgreSQL, SQLite and MariaDB (median of 3). Printed table is the one in
docs/performance.md.

    .venv/bin/python bench/scenarios/batch_size.py [rows]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from common.users import user_model
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

Base, BenchUser = user_model("bench_batch_users")
SIZES: tuple[int | None, ...] = (50, 100, 250, 500, 1000, 2000, 5000, 10_000, None)
"""None: bulk_create's default for the dialect (10,000 on PostgreSQL, 2,000 elsewhere)."""
URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench",
    "sqlite": f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'batch.db'}",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/baserepo_bench?charset=utf8mb4",
}


async def measure(url: str, rows: int) -> dict[int | None, float]:
    await ensure_database(url)
    engine = create_engine(url)
    rates: dict[int | None, list[float]] = {size: [] for size in SIZES}
    try:
        for _ in range(3):
            for size in SIZES:
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.drop_all)
                    await conn.run_sync(Base.metadata.create_all)
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    repo = BaseRepository(BenchUser, session)
                    data = [{"name": f"User {i}", "email": f"u{i}@x.com"} for i in range(rows)]
                    start = time.perf_counter()
                    result = await repo.bulk_create(data, batch_size=size)
                    rates[size].append(result.success_count / (time.perf_counter() - start))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()
    return {size: statistics.median(values) for size, values in rates.items()}


async def main(rows: int) -> None:
    print(f"bulk_create of {rows:,} two-column records, rows/s relative to the best batch size")
    print("database    " + "".join(f"{size or 'default':>8}" for size in SIZES))
    for name, url in URLS.items():
        medians = await measure(url, rows)
        best = max(medians.values())
        print(f"{name:<12}" + "".join(f"{medians[s] / best:>8.2f}" for s in SIZES))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
