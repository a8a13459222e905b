"""Read replicas: how far an asynchronous replica trails a 100,000-row bulk_create when the
call returns, what a cached count read right then is served, and what a cache miss costs on
the replica against the primary. Starts its own primary and streaming replica
(tests/pg_replica.py) in a temp dir and removes them at the end.

    .venv/bin/python bench/probes/replica_fill.py [--rows 100000] [--trials 5] [--misses 300]

Per trial: bulk_create ``--rows`` rows through a repository with ``read_replica=``, then at
once count the rows on the replica directly and through the cached repository (a new session,
so the read is a fill). Then the mean time of a cache miss (a ``get`` of a new id each time,
so every call misses and fills): without a replica, and with one that has caught up.
Figures are quoted in docs/deployment.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import Base, User
from tests.pg_replica import start_replica_pair, stop_replica_pair

from baserepo import BaseRepository, CacheConfig, create_engine


async def replica_rows(replica: AsyncEngine) -> int:
    async with replica.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar() or 0)


async def mean_miss_ms(
    primary: AsyncEngine, replica: AsyncEngine | None, config: CacheConfig, ids: range
) -> float:
    start = time.perf_counter()
    async with AsyncSession(primary, expire_on_commit=False) as session:
        repo: BaseRepository[User, object, object] = BaseRepository(
            User, session, config, read_replica=replica
        )
        for id_ in ids:
            assert await repo.get(id_) is not None
            session.expunge_all()
    return (time.perf_counter() - start) / len(ids) * 1000


async def run(rows: int, trials: int, misses: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="baserepo-replica-probe-"))
    pair = start_replica_pair(directory)
    primary, replica = create_engine(pair.primary_url), create_engine(pair.replica_url)
    try:
        async with primary.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        for trial in range(trials):
            config = CacheConfig()
            async with AsyncSession(primary, expire_on_commit=False) as session:
                await session.execute(text("TRUNCATE users RESTART IDENTITY"))
                await session.commit()
            records = [
                {"name": f"u{i}", "email": f"t{trial}-{i}@example.com", "department": "eng"}
                for i in range(rows)
            ]
            async with AsyncSession(primary, expire_on_commit=False) as session:
                await BaseRepository(User, session, config, read_replica=replica).bulk_create(
                    records
                )
            seen = await replica_rows(replica)
            async with AsyncSession(primary, expire_on_commit=False) as session:
                served = await BaseRepository(User, session, config, read_replica=replica).count()
            print(f"trial {trial}: replica had {seen:,} of {rows:,} rows; cached count {served:,}")
            await asyncio.sleep(0.5)
        config = CacheConfig()
        await mean_miss_ms(primary, None, config, range(1, 50))  # warm-up
        base = await mean_miss_ms(primary, None, CacheConfig(), range(1, misses + 1))
        with_replica = await mean_miss_ms(
            primary, replica, CacheConfig(), range(misses + 1, 2 * misses + 1)
        )
        print(f"cache miss (get + fill), mean of {misses}: primary {base:.3f} ms, "
              f"replica {with_replica:.3f} ms")  # fmt: skip
    finally:
        await primary.dispose()
        await replica.dispose()
        stop_replica_pair(pair)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--misses", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.rows, arguments.trials, arguments.misses))
