"""A steady SQLite bulk_create workload to profile: five calls of 100,000 of the harness's rows
(bench/alternatives/data.py) into a fresh table on a temporary file, as in docs/performance.md:

    .venv/bin/py-spy record -f raw -r 500 -o /tmp/sqlite.txt -- \\
        .venv/bin/python bench/profiles/profile_sqlite_bulk_create.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, fresh_table, generate_rows
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, EventBus, create_engine

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="baserepo_profile_") as scratch:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(scratch) / 'profile.db'}")
        try:
            for run in range(5):
                await fresh_table(engine, BenchUser)
                rows = generate_rows(ROWS, f"r{run}")
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    repo = BaseRepository(BenchUser, session, event_bus=EventBus())
                    await session.connection()
                    await session.commit()
                    start = time.perf_counter()
                    result = await repo.bulk_create(rows)
                    seconds = time.perf_counter() - start
                print(f"{result.success_count / seconds:,.0f} rows/s", flush=True)
        finally:
            await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
