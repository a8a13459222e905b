"""Rows per second of ``repo.create`` in a loop versus ``repo.bulk_create``, and their ratio.

    python bench/scenarios/bulk_vs_individual.py  # PostgreSQL and SQLite, 1k and 10k rows
    python bench/scenarios/bulk_vs_individual.py --databases sqlite --sizes 1000 --repeat 5
    baserepo bench --databases postgresql         # the same, from a source checkout

Each measurement starts from a freshly created table and a new session; the three methods
run in an order rotated on every repetition, and the median of ``--repeat`` runs is reported.
``repo.create`` commits every row, as an application that creates records one by one does;
``bulk_create`` runs with its defaults (batch size, events on, no subscribers), and
``bulk+events`` adds a subscribed handler, to show what events cost. Past
``--individual-sample`` rows the loop is timed on that many creates only (the rate barely
depends on the table's size), and the table says so. Results also go to
``bench/results/bulk_vs_individual.json``.

The issue's bar: bulk/individual >= 50x on PostgreSQL at 10,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from common.users import user_model
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, EventBus, EventType, RepositoryEvent, create_engine

# The demo's helper: CREATE DATABASE on the server when it is missing.
from baserepo.testing import ensure_database

SERVER_URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/baserepo_bench?charset=utf8mb4",
}
DATABASES = ("postgresql", "sqlite", "mariadb")
RESULTS = Path(__file__).resolve().parents[1] / "results" / "bulk_vs_individual.json"
BAR = ("postgresql", 10_000, 50.0)
"""(database, rows, minimum bulk/individual ratio) the issue asks for."""


Base, BenchUser = user_model("bench_users")


Repository = BaseRepository[Any, dict[str, Any], dict[str, Any]]


@dataclass
class Measurement:
    database: str
    rows: int
    method: str
    timed_rows: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.timed_rows / statistics.median(self.seconds)


def records(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"User {i}",
            "email": f"{tag}.user{i}@example.com",
            "department": ("engineering", "sales", "marketing", "support")[i % 4],
            "salary": 30_000 + i % 60 * 1_000,
        }
        for i in range(count)
    ]


async def fresh_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)


async def time_individual(engine: AsyncEngine, data: list[dict[str, Any]]) -> float:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = Repository(BenchUser, session)
        await session.connection()  # connect before the clock starts
        start = time.perf_counter()
        for record in data:
            await repo.create(record)
        return time.perf_counter() - start


async def time_bulk(engine: AsyncEngine, data: list[dict[str, Any]]) -> float:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = Repository(BenchUser, session)
        await session.connection()
        start = time.perf_counter()
        result = await repo.bulk_create(data)
        elapsed = time.perf_counter() - start
    if result.success_count != len(data):
        raise RuntimeError(f"bulk_create wrote {result.success_count} of {len(data)}: {result}")
    return elapsed


async def time_bulk_with_events(engine: AsyncEngine, data: list[dict[str, Any]]) -> float:
    """bulk_create with emit_events=True and a subscriber that reads every event's ids."""
    delivered: list[int] = []

    async def count_ids(event: RepositoryEvent) -> None:
        delivered.append(len(event.ids))

    bus = EventBus()
    bus.subscribe(EventType.CREATED, count_ids, model=BenchUser)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = Repository(BenchUser, session, event_bus=bus)
        await session.connection()
        start = time.perf_counter()
        result = await repo.bulk_create(data, emit_events=True)
        elapsed = time.perf_counter() - start
    if result.success_count != len(data) or sum(delivered) != len(data):
        raise RuntimeError(f"events reported {sum(delivered)} of {len(data)} created rows")
    return elapsed


TIMERS = {
    "individual": time_individual,
    "bulk": time_bulk,
    "bulk+events": time_bulk_with_events,
}


async def bench_database(
    name: str, url: str, sizes: list[int], repeat: int, sample: int
) -> tuple[list[Measurement], str]:
    await ensure_database(url)
    engine = create_engine(url)
    try:
        # Untimed warm-up: connections, dialect initialisation, statement caches.
        await fresh_table(engine)
        await time_individual(engine, records(100, "warm-individual"))
        await time_bulk(engine, records(1_000, "warm-bulk"))
        version = ".".join(str(p) for p in engine.dialect.server_version_info or ())
        measurements: list[Measurement] = []
        for size in sizes:
            timed = min(size, sample) if sample else size
            individual = Measurement(name, size, "individual", timed)
            bulk = Measurement(name, size, "bulk", size)
            with_events = Measurement(name, size, "bulk+events", size)
            methods = [individual, bulk, with_events]
            for repetition in range(repeat):
                # Rotate the order so no method always runs first (or last) on a warm server.
                shift = repetition % len(methods)
                for measurement in methods[shift:] + methods[:shift]:
                    await fresh_table(engine)
                    data = records(measurement.timed_rows, f"r{repetition}")
                    timer = TIMERS[measurement.method]
                    measurement.seconds.append(await timer(engine, data))
                print(
                    f"  {name} {size:,} rows, run {repetition + 1}/{repeat}: "
                    f"individual {individual.seconds[-1]:.3f}s for {timed:,}, "
                    f"bulk {bulk.seconds[-1]:.3f}s, with events {with_events.seconds[-1]:.3f}s",
                    flush=True,
                )
            measurements += methods
        return measurements, version
    finally:
        await engine.dispose()


def pairs(measurements: list[Measurement]) -> list[tuple[Measurement, Measurement]]:
    """(individual, bulk) per database and size, in the order measured."""
    individual = {(m.database, m.rows): m for m in measurements if m.method == "individual"}
    return [(individual[(m.database, m.rows)], m) for m in measurements if m.method == "bulk"]


def events_run(measurements: list[Measurement], bulk: Measurement) -> Measurement:
    return next(
        m
        for m in measurements
        if m.method == "bulk+events" and (m.database, m.rows) == (bulk.database, bulk.rows)
    )


def ratio(individual: Measurement, bulk: Measurement) -> float:
    return bulk.rows_per_second / individual.rows_per_second


def table(measurements: list[Measurement], repeat: int, sample: int) -> list[str]:
    header = (
        "database",
        "rows",
        "individual rows/s",
        "bulk rows/s",
        "bulk/individual",
        "bulk+events rows/s",
        "events/plain",
    )
    lines: list[tuple[str, ...]] = [header]
    for individual, bulk in pairs(measurements):
        sampled = " *" if individual.timed_rows < individual.rows else ""
        evented = events_run(measurements, bulk)
        lines.append(
            (
                bulk.database,
                f"{bulk.rows:,}",
                f"{individual.rows_per_second:,.0f}{sampled}",
                f"{bulk.rows_per_second:,.0f}",
                f"{ratio(individual, bulk):,.1f}x",
                f"{evented.rows_per_second:,.0f}",
                f"{evented.rows_per_second / bulk.rows_per_second:.2f}x",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        cells = [
            line[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)),
        ]
        out.append("  ".join(cells))
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append(f"median of {repeat} runs; each run on a fresh table; method order rotated")
    out.append("bulk+events: emit_events=True with one subscribed handler reading every event")
    if any(m.timed_rows < m.rows for m in measurements):
        out.append(f"* repo.create timed on a sample of the first {sample:,} creates")
    return out


def verdict(measurements: list[Measurement]) -> str | None:
    database, rows, minimum = BAR
    for individual, bulk in pairs(measurements):
        if (bulk.database, bulk.rows) == (database, rows):
            value = ratio(individual, bulk)
            status = "PASS" if value >= minimum else "FAIL"
            return (
                f"bar: bulk/individual >= {minimum:.0f}x on {database} at {rows:,} rows: "
                f"{value:.1f}x {status}"
            )
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--databases",
        default="postgresql,sqlite",
        help=f"comma list of {', '.join(DATABASES)} (default postgresql,sqlite)",
    )
    parser.add_argument("--sizes", default="1000,10000", help="comma list of row counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--individual-sample",
        type=int,
        default=1_000,
        metavar="N",
        help="time repo.create on at most N rows per run (0: all rows; default 1000)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = sorted(set(args.databases) - set(DATABASES))
    if unknown:
        parser.error(f"unknown databases {unknown}; choose from {', '.join(DATABASES)}")
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be integers, got {args.sizes!r}")
    if args.repeat < 1 or any(s < 1 for s in args.sizes) or args.individual_sample < 0:
        parser.error("--repeat and --sizes must be positive, --individual-sample >= 0")
    return args


async def run(args: argparse.Namespace) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="baserepo_bench_"))
    measurements: list[Measurement] = []
    versions: dict[str, str] = {}
    try:
        for name in args.databases:
            url = (
                f"sqlite+aiosqlite:///{scratch / 'bench.sqlite3'}"
                if name == "sqlite"
                else os.environ.get(f"BASEREPO_BENCH_{name.upper()}_URL", SERVER_URLS[name])
            )
            print(f"{name}: {make_url(url).render_as_string(hide_password=True)}", flush=True)
            found, versions[name] = await bench_database(
                name, url, args.sizes, args.repeat, args.individual_sample
            )
            measurements += found
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    for line in table(measurements, args.repeat, args.individual_sample):
        print(line)
    bar = verdict(measurements)
    if bar:
        print(bar)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlalchemy": sqlalchemy.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "servers": versions,
        "repeat": args.repeat,
        "individual_sample": args.individual_sample,
        "measurements": [
            {**asdict(m), "median_rows_per_second": round(m.rows_per_second)} for m in measurements
        ],
        "ratios": [
            {
                "database": b.database,
                "rows": b.rows,
                "bulk_over_individual": round(ratio(i, b), 1),
                "events_over_plain": round(
                    events_run(measurements, b).rows_per_second / b.rows_per_second, 2
                ),
            }
            for i, b in pairs(measurements)
        ],
        "bar": bar,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
