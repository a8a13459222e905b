"""What the cache adds to a single-row write: ``repo.update(id, ...)`` on PostgreSQL without a
cache, and with a Redis cache (write intent before the COMMIT, its end and the bump after),
interleaved in one run so both see the same machine.

    .venv/bin/python bench/probes/write_path_cost.py [--updates 300] [--repeat 5]

``BASEREPO_BENCH_POSTGRESQL_URL`` picks the database (created if missing, a ``users`` table
dropped and made), ``BASEREPO_BENCH_REDIS_URL`` the Redis (keys under a prefix of their own,
unlinked at the end). Prints each side's median per round and the ratio; docs/deployment.md
quotes it ("A writer that dies between its commit and its cache bump", Cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import Base, User

from baserepo import BaseRepository, CacheConfig, create_engine
from baserepo.testing import ensure_database

URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
REDIS_URL = os.environ.get("BASEREPO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROWS = 10


async def median_update_ms(engine: AsyncEngine, config: CacheConfig | None, updates: int) -> float:
    times = []
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(User, session, config)
        for i in range(updates):
            started = time.perf_counter()
            await repo.update(1 + i % ROWS, {"salary": i})
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def main(updates: int, repeat: int) -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await BaseRepository(User, session).bulk_create(
            [{"name": f"u{i}", "email": f"u{i}@example.com"} for i in range(ROWS)]
        )
    client = Redis.from_url(REDIS_URL)
    prefix = f"bench-write-{uuid.uuid4().hex[:8]}"
    config = CacheConfig(redis_client=client, key_prefix=prefix)
    plain: list[float] = []
    cached: list[float] = []
    try:
        for _ in range(repeat):
            plain.append(await median_update_ms(engine, None, updates))
            cached.append(await median_update_ms(engine, config, updates))
    finally:
        async for key in client.scan_iter(match=f"{prefix}:*"):
            await client.unlink(key)
        await client.aclose()
        await engine.dispose()
    no_cache, with_cache = statistics.median(plain), statistics.median(cached)
    print(f"update, no cache:   {[round(m, 2) for m in plain]} ms, median {no_cache:.2f} ms")
    print(f"update, with cache: {[round(m, 2) for m in cached]} ms, median {with_cache:.2f} ms")
    print(f"with cache / no cache: {with_cache / no_cache:.2f}x (+{with_cache - no_cache:.2f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.updates, arguments.repeat))
