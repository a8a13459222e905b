"""A steady bulk_create workload to profile (six calls of 100,000 dict records into
tests.models.User on PostgreSQL), as used for docs/performance.md:

    .venv/bin/py-spy record -f raw -r 500 -o /tmp/bulk.txt -- \\
        .venv/bin/python bench/profiles/profile_bulk_create.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: tests.models

from sqlalchemy.ext.asyncio import AsyncSession
from tests.models import Base, User

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"


async def main() -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(User, session)
        for run in range(6):
            data = [
                {
                    "name": f"User {i}",
                    "email": f"r{run}u{i}@x.com",
                    "department": "eng",
                    "salary": i,
                }
                for i in range(100_000)
            ]
            start = time.perf_counter()
            result = await repo.bulk_create(data)
            print(f"{result.success_count / (time.perf_counter() - start):,.0f} rows/s")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
