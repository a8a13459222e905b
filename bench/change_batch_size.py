"""bulk_update of ~30% of a 100,000-row PostgreSQL table against the single Core
``UPDATE ... RETURNING id``, for two batch sizes (median of 3; the table is ANALYZEd after
loading, as autovacuum would). The figures behind DEFAULT_CHANGE_BATCH_SIZE in
docs/performance.md.

    .venv/bin/python bench/change_batch_size.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from _users import user_model
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, create_engine
from baserepo._demo import ensure_database

Base, BenchUser = user_model("bench_change_users")
URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"


async def one_run(engine, batch_size: int | None) -> float:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(BenchUser, session)
        rows = ({"name": f"U{i}", "email": f"u{i}@x", "salary": i % 100} for i in range(100_000))
        await repo.bulk_create(rows, batch_size=5000)
        await session.execute(text(f"ANALYZE {BenchUser.__tablename__}"))
        await session.commit()
        start = time.perf_counter()
        if batch_size is None:
            statement = (
                update(BenchUser)
                .where(BenchUser.salary < 30)
                .values(department="ops")
                .returning(BenchUser.id)
            )
            changed = len((await session.execute(statement)).all())
            await session.commit()
        else:
            result = await repo.bulk_update(
                {"salary__lt": 30}, {"department": "ops"}, batch_size=batch_size
            )
            changed = result.success_count
        return changed / (time.perf_counter() - start)


async def main() -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    try:
        core = statistics.median([await one_run(engine, None) for _ in range(3)])
        for batch_size in (1_000, 10_000):
            ours = statistics.median([await one_run(engine, batch_size) for _ in range(3)])
            print(
                f"batch {batch_size:>6,}: bulk_update {ours:>9,.0f} rows/s, "
                f"single statement {core:>9,.0f} rows/s, ratio {ours / core:.2f}"
            )
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
