"""Microseconds of a cached ``repo.list(limit=100)``: a hit, a miss, the same query with no
cache, and the raw floor a hit cannot beat, all measured in one run; the issue's three ratios.

    python bench/scenarios/cache_hit_miss.py                       # 5 repetitions of 500 iterations
    python bench/scenarios/cache_hit_miss.py --quick               # a smoke run: 3 x 60, no JSON
    python bench/scenarios/cache_hit_miss.py --iterations 1000 --repeat 7

PostgreSQL (``BASEREPO_BENCH_POSTGRESQL_URL``, default the local ``baserepo_bench``, created
if missing) holds a fresh table of 1,000 users; Redis (``--redis-url`` or
``BASEREPO_BENCH_REDIS_URL``, default 127.0.0.1:6379) holds the cache under a key prefix of
this run's own, deleted at the end. Every measurement uses the same redis-py client.

What is timed (each call starts with no open transaction, as in a web request; committing
the previous one, and any other set-up, happens off the clock):

- ``floor``: one ``GET`` of a 100-row orjson payload, ``orjson.loads`` and 100 instances
  made without ``__init__`` (``class_manager.new_instance()`` + ``__dict__.update``): the
  least any Redis-backed cache of ORM instances has to do. It decodes no column (the
  cache restores ``created_at`` as a datetime; the floor leaves it a string).
- ``hit``: ``repo.list(limit=100)`` on a repository with ``CacheConfig(redis_client=...)``
  (defaults: usage tracking on) and a current entry.
- ``uncached``: the same call on a repository without ``cache_config``.
- ``miss``: the cached repository after the entry was made stale (its generation bumped,
  untimed, by ``invalidate_cache()`` with a pattern that matches no key). The caller gets
  its rows before the fill reaches Redis; the fill runs in the background and is reported,
  untimed by the bars, as ``fill (background)``.
- ``no cache``: as ``uncached``, measured alternating with ``miss`` so each pair sees the
  same conditions.

Each iteration runs floor/hit/uncached in a rotated order, then miss/no cache in an
alternating one. A figure is the median of ``--repeat`` medians of ``--iterations`` calls.
Every hit is checked to have been a hit and every miss a miss (from ``cache_stats()``), and
a cached result to equal the database's. Results also go to
``bench/results/cache_hit_miss.json``.

The bars: hit/floor <= 1.5 (a hit attaches its objects to the session as persistent, as a
query would, which the floor does not; it was 1.3 while hits were detached copies), uncached/hit
>= 4, miss/no cache <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from common.users import user_model
from redis.asyncio import Redis
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, CacheConfig, create_engine

# The demo's helper: CREATE DATABASE on the server when it is missing.
from baserepo.testing import ensure_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

DATABASE_URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
REDIS_URL = os.environ.get("BASEREPO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STALE_ONLY = "bench-matches-no-key"
"""invalidate_cache() pattern: deletes nothing, only moves the generation."""
RESULTS = Path(__file__).resolve().parents[1] / "results" / "cache_hit_miss.json"
USERS = 1_000
LIMIT = 100
WARMUP_CALLS = 50
QUICK = (60, 3)
"""(iterations, repeat) of ``--quick``."""

BARS = (
    # (name, numerator, denominator, comparison, bound)
    ("hit/floor", "hit", "floor", "<=", 1.5),
    ("uncached/hit", "uncached", "hit", ">=", 4.0),
    ("miss/no cache", "miss", "no cache", "<=", 1.10),
)


Base, BenchUser = user_model("bench_cache_users")


Repository = BaseRepository[Any, dict[str, Any], dict[str, Any]]
COLUMN_ATTRS = [attr.key for attr in BenchUser.__mapper__.column_attrs]


@dataclass
class Measurement:
    name: str
    medians_us: list[float] = field(default_factory=list)
    """One median per repetition."""
    samples_us: list[float] = field(default_factory=list)
    """The current repetition's samples."""

    def close_repetition(self) -> None:
        self.medians_us.append(statistics.median(self.samples_us))
        self.samples_us = []

    @property
    def median_us(self) -> float:
        return statistics.median(self.medians_us)


async def timed(measurement: Measurement, call: Callable[[], Awaitable[Any]]) -> Any:
    start = time.perf_counter_ns()
    result = await call()
    measurement.samples_us.append((time.perf_counter_ns() - start) / 1_000)
    return result


class Bench:
    """The two repositories, the floor's payload, and the untimed steps around each call."""

    def __init__(self, engine: AsyncEngine, client: Redis, prefix: str) -> None:
        self.client = client
        self.config = CacheConfig(redis_client=client, key_prefix=prefix)
        self.cached_session = AsyncSession(engine, expire_on_commit=False)
        self.plain_session = AsyncSession(engine, expire_on_commit=False)
        self.cached = Repository(BenchUser, self.cached_session, self.config)
        self.plain = Repository(BenchUser, self.plain_session)
        self.floor_key = f"{prefix}:floor"
        self.new_instance = BenchUser.__mapper__.class_manager.new_instance
        self.wrong: dict[str, int] = {"hit": 0, "miss": 0}
        """Timed hits that were not hits, misses that were not misses."""
        self.fill_us: list[float] = []

    async def prepare(self) -> None:
        rows = await self.plain.list(limit=LIMIT)
        await self.plain_session.commit()
        payload = orjson.dumps([[getattr(row, a) for a in COLUMN_ATTRS] for row in rows])
        await self.client.set(self.floor_key, payload)
        # The cached result must be the database's, instance for instance.
        await self.cached.list(limit=LIMIT)
        await self.config.settle()
        cached = await self.cached.list(limit=LIMIT)
        if [_values(r) for r in cached] != [_values(r) for r in rows] or len(rows) != LIMIT:
            raise RuntimeError("the cached list(limit=100) differs from the database's")

    # -- the calls ----------------------------------------------------------------------

    async def floor(self) -> list[BenchUser]:
        payload = await self.client.get(self.floor_key)
        new_instance, instances = self.new_instance, []
        for row in orjson.loads(payload):
            instance = new_instance()
            instance.__dict__.update(zip(COLUMN_ATTRS, row, strict=False))
            instances.append(instance)
        return instances

    async def cached_list(self) -> list[BenchUser]:
        return await self.cached.list(limit=LIMIT)

    async def plain_list(self) -> list[BenchUser]:
        return await self.plain.list(limit=LIMIT)

    # -- one timed call each, with its untimed set-up -------------------------------------

    async def run(self, kind: str, measurement: Measurement) -> None:
        if kind == "floor":
            await timed(measurement, self.floor)
        elif kind in ("uncached", "no cache"):
            await self.plain_session.commit()
            rows = await timed(measurement, self.plain_list)
            _check_rows(rows)
        elif kind == "hit":
            await self.config.settle()  # the last miss's fill has landed: the entry is current
            await self.cached_session.commit()
            before = self._lookups()
            rows = await timed(measurement, self.cached_list)
            self._expect("hit", before)
            _check_rows(rows)
        elif kind == "miss":
            # The entry is now stale: invalidate_cache() deletes the keys its pattern matches
            # (none here) and moves the model's generation, the public way to a bump.
            await self.cached.invalidate_cache(STALE_ONLY)
            await self.config.settle()
            await self.cached_session.commit()
            before = self._lookups()
            rows = await timed(measurement, self.cached_list)
            self._expect("miss", before)
            _check_rows(rows)
            start = time.perf_counter_ns()
            await self.config.settle()
            self.fill_us.append((time.perf_counter_ns() - start) / 1_000)
        else:
            raise ValueError(kind)

    def _lookups(self) -> tuple[int, int]:
        stats = self.cached.cache_stats()
        assert stats is not None
        return stats.hits, stats.misses

    def _expect(self, kind: str, before: tuple[int, int]) -> None:
        hits, misses = self._lookups()
        expected = (before[0] + 1, before[1]) if kind == "hit" else (before[0], before[1] + 1)
        if (hits, misses) != expected:
            self.wrong[kind] += 1

    async def close(self) -> None:
        await self.config.settle()
        await self.cached_session.close()
        await self.plain_session.close()


def _values(instance: BenchUser) -> list[Any]:
    return [getattr(instance, a) for a in COLUMN_ATTRS]


def _check_rows(rows: list[BenchUser]) -> None:
    if len(rows) != LIMIT:
        raise RuntimeError(f"list(limit={LIMIT}) returned {len(rows)} rows")


GROUPS = (("floor", "hit", "uncached"), ("miss", "no cache"))
NAMES = [name for group in GROUPS for name in group]


async def measure(bench: Bench, iterations: int, repeat: int) -> dict[str, Measurement]:
    measurements = {name: Measurement(name) for name in NAMES}
    scratch = Measurement("warm-up")
    for i in range(WARMUP_CALLS):  # connections, statement caches, scripts, code paths
        for name in NAMES[i % len(NAMES) :] + NAMES[: i % len(NAMES)]:
            await bench.run(name, scratch)
    bench.wrong = {"hit": 0, "miss": 0}
    bench.fill_us = []
    for repetition in range(repeat):
        gc.collect()
        for i in range(iterations):
            # Rotate so that no call always follows the same one.
            for group in GROUPS:
                shift = i % len(group)
                for name in group[shift:] + group[:shift]:
                    await bench.run(name, measurements[name])
        for m in measurements.values():
            m.close_repetition()
        print(
            f"  run {repetition + 1}/{repeat}: "
            + ", ".join(f"{m.name} {m.medians_us[-1]:,.0f} us" for m in measurements.values()),
            flush=True,
        )
    return measurements


def ratios(measurements: dict[str, Measurement]) -> list[dict[str, Any]]:
    out = []
    for name, numerator, denominator, comparison, bound in BARS:
        value = measurements[numerator].median_us / measurements[denominator].median_us
        passed = value <= bound if comparison == "<=" else value >= bound
        out.append(
            {
                "ratio": name,
                "value": round(value, 2),
                "bar": f"{comparison} {bound}",
                "pass": passed,
            }
        )
    return out


def table(
    measurements: dict[str, Measurement],
    found: list[dict[str, Any]],
    fill_us: float,
    iterations: int,
    repeat: int,
) -> list[str]:
    rows = [("measurement", "median us", "runs' medians us")]
    for m in measurements.values():
        spread = f"{min(m.medians_us):,.0f} .. {max(m.medians_us):,.0f}"
        rows.append((m.name, f"{m.median_us:,.0f}", spread))
    rows.append(("fill (background)", f"{fill_us:,.0f}", "after each miss, untimed above"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for number, row in enumerate(rows):
        lines.append(f"{row[0].ljust(widths[0])}  {row[1].rjust(widths[1])}  {row[2]}".rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for ratio in found:
        status = "PASS" if ratio["pass"] else "FAIL"
        lines.append(
            f"{ratio['ratio']:<14} {ratio['value']:>6.2f}x  bar {ratio['bar']:<7} {status}"
        )
    lines.append(
        f"median of {repeat} runs' medians, {iterations} calls each per measurement; "
        f"{LIMIT} of {USERS:,} rows"
    )
    return lines


async def fresh_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        result = await Repository(BenchUser, session).bulk_create(
            {
                "name": f"User {i}",
                "email": f"user{i}@example.com",
                "department": ("engineering", "sales", "marketing", "support")[i % 4],
                "salary": 30_000 + i % 60 * 1_000,
                "is_active": i % 7 != 0,
            }
            for i in range(USERS)
        )
    if result.success_count != USERS:
        raise RuntimeError(f"bulk_create wrote {result.success_count} of {USERS}: {result}")


async def delete_keys(client: Redis, prefix: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1_000)]
    return int(await client.unlink(*keys)) if keys else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=500, help="calls per run (default 500)")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the median is reported")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK[0]} iterations x {QUICK[1]} runs (overrides the two above)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"default {REDIS_URL}")
    parser.add_argument("--database-url", default=DATABASE_URL, help="a PostgreSQL async URL")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where the JSON goes (default {RESULTS.relative_to(RESULTS.parents[2])}; "
        "none for --quick)",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.output is None and not args.quick:
        args.output = RESULTS
    if args.quick:
        args.iterations, args.repeat = QUICK
    if args.iterations < 1 or args.repeat < 1:
        parser.error("--iterations and --repeat must be positive")
    return args


async def run(args: argparse.Namespace) -> int:
    url = args.database_url
    print(f"database: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    print(f"redis: {args.redis_url}", flush=True)
    await ensure_database(url)
    engine = create_engine(url)
    client = Redis.from_url(args.redis_url)
    prefix = f"baserepo-bench-{uuid.uuid4().hex[:12]}"
    bench: Bench | None = None
    try:
        await fresh_table(engine)
        bench = Bench(engine, client, prefix)
        await bench.prepare()
        measurements = await measure(bench, args.iterations, args.repeat)
        wrong = dict(bench.wrong)
        fill_us = statistics.median(bench.fill_us)
        stats = bench.cached.cache_stats()
        database_version = ".".join(str(p) for p in engine.dialect.server_version_info or ())
        redis_version = (await client.info("server"))["redis_version"]
    finally:
        if bench is not None:
            await bench.close()
        deleted = await delete_keys(client, prefix)
        await client.aclose()
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()
    print(f"cleaned up: {deleted} Redis keys under {prefix}:*, table {BenchUser.__tablename__}")
    if any(wrong.values()):
        print(
            f"WARNING: calls of the wrong kind: {wrong['hit']} hits missed, "
            f"{wrong['miss']} misses hit"
        )

    found = ratios(measurements)
    print()
    for line in table(measurements, found, fill_us, args.iterations, args.repeat):
        print(line)

    if args.output is None:
        print("results not written (--quick without --output)")
        return 0 if not any(wrong.values()) else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/scenarios/cache_hit_miss.py", *args.argv]),
        "python": platform.python_version(),
        "sqlalchemy": sqlalchemy.__version__,
        "redis_py": redis.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "servers": {"postgresql": database_version, "redis": redis_version},
        "rows_in_table": USERS,
        "limit": LIMIT,
        "iterations": args.iterations,
        "repeat": args.repeat,
        "measurements_us": {
            m.name: {
                "median": round(m.median_us, 1),
                "run_medians": [round(v, 1) for v in m.medians_us],
            }
            for m in measurements.values()
        },
        "fill_background_us": round(fill_us, 1),
        "ratios": found,
        "wrong_kind_calls": wrong,
        "cache_stats": None
        if stats is None
        else {
            "hits": stats.hits,
            "misses": stats.misses,
            "fills": stats.fills,
            "stale_fills_rejected": stats.stale_fills_rejected,
            "backend_errors": stats.backend_errors,
        },
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if not any(wrong.values()) else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
