"""What tracing and metrics cost: bulk_create of 10,000 rows (one batch, and ten of 1,000) on
PostgreSQL, and a cached list hit on Redis, with no OpenTelemetry provider set and with the
SDK's tracer and meter providers set (a batch span processor, as in production, whose exporter
drops the spans; an in-memory metric reader).

    .venv/bin/python bench/probes/telemetry_cost.py [--rounds 4] [--creates 5] [--hits 2000]

A provider is set once per process, so each round runs each mode in a child process of its
own, the modes alternating so both see the same machine. ``BASEREPO_BENCH_POSTGRESQL_URL`` and
``BASEREPO_BENCH_REDIS_URL`` pick the services (a ``users`` table is dropped and made; keys
under a prefix of their own, unlinked at the end). Prints each mode's medians and the ratios;
docs/observability.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.models import Base, User

from baserepo import BaseRepository, CacheConfig, create_engine
from baserepo.testing import ensure_database

URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
REDIS_URL = os.environ.get("BASEREPO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROWS = 10_000
WORKLOADS = ("bulk_create 10k, 1 batch", "bulk_create 10k, 10 batches", "cached list hit")


def set_sdk_providers() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


async def measure(creates: int, hits: int) -> dict[str, float]:
    engine = create_engine(URL)
    rows = [
        {"name": f"u{i}", "email": f"u{i}@example.com", "department": "eng"} for i in range(ROWS)
    ]
    medians: dict[str, float] = {}
    try:
        for workload, batch_size in zip(WORKLOADS[:2], (ROWS, 1_000), strict=True):
            times = []
            for _ in range(creates + 1):  # the first one warms up (imports, type look-ups)
                async with AsyncSession(engine, expire_on_commit=False) as session:
                    # TRUNCATE, not DELETE: dead rows would slow every later round.
                    await session.execute(text("TRUNCATE users RESTART IDENTITY"))
                    await session.commit()
                    started = time.perf_counter()
                    await BaseRepository(User, session).bulk_create(rows, batch_size=batch_size)
                    times.append(time.perf_counter() - started)
            medians[workload] = statistics.median(times[1:]) * 1000  # ms
        client = Redis.from_url(REDIS_URL)
        prefix = f"bench-telemetry-{uuid.uuid4().hex[:8]}"
        config = CacheConfig(redis_client=client, key_prefix=prefix)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                repo = BaseRepository(User, session, config)
                await repo.list({"department": "eng"}, limit=100)
                await session.commit()
                await config.settle()
                times = []
                for _ in range(hits):
                    started = time.perf_counter()
                    await repo.list({"department": "eng"}, limit=100)
                    times.append(time.perf_counter() - started)
            medians[WORKLOADS[2]] = statistics.median(times) * 1_000_000  # us
        finally:
            async for key in client.scan_iter(match=f"{prefix}:*"):
                await client.unlink(key)
            await client.aclose()
    finally:
        await engine.dispose()
    return medians


async def prepare() -> None:
    await ensure_database(URL)
    engine = create_engine(URL)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


def child(mode: str, creates: int, hits: int) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--creates", str(creates), "--hits", str(hits)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main(rounds: int, creates: int, hits: int) -> None:
    asyncio.run(prepare())
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            runs[mode].append(child(mode, creates, hits))
    for workload in WORKLOADS:
        unit = "us" if workload == WORKLOADS[2] else "ms"
        off = statistics.median(run[workload] for run in runs["off"])
        on = statistics.median(run[workload] for run in runs["on"])
        print(
            f"{workload:<28} no provider {off:8.1f} {unit}   SDK provider {on:8.1f} {unit}   "
            f"ratio {on / off:.3f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--creates", type=int, default=5)
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--child", choices=("off", "on"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child is None:
        main(arguments.rounds, arguments.creates, arguments.hits)
    else:
        if arguments.child == "on":
            set_sdk_providers()
        print(json.dumps(asyncio.run(measure(arguments.creates, arguments.hits))))
