"""Per-row updates: ``bulk_update_rows`` against Django's ``bulk_update`` and a per-row loop.

    python bench/scenarios/row_updates.py                       # PostgreSQL and SQLite, 10k rows
    python bench/scenarios/row_updates.py --databases postgresql mariadb --rows 10000 --repeat 3

Every method gives the same ``--rows`` rows of a freshly seeded table (seeding untimed) their own
new ``salary`` and ``department`` (distinct per row), and is timed from the list of rows to the
commit:

- ``bulk_update_rows``: ``repo.bulk_update_rows(rows)``, defaults (events on, no subscriber);
- ``django``: ``Model.objects.bulk_update(objs, ["salary", "department"])`` inside
  ``transaction.atomic()``, from instances built from the same rows (Django's own batching:
  on PostgreSQL all rows in one statement, whose CASE grows with the square of its rows);
  ``django b=1000``: the same with ``batch_size=1000``, as Django's docs suggest for many
  rows; PostgreSQL (psycopg 3) and SQLite only: no MySQL driver for Django is installed here;
- ``loop``: one ``UPDATE ... WHERE id = :id`` per row through the same ``AsyncSession``, one
  commit at the end (the per-row loop at its cheapest).

Each check reads the table back (untimed): every row must hold its own new values. The median
of ``--repeat`` runs is printed, with ``bulk_update_rows``' speed-up over each alternative.
The issue's bar: >= 10x Django's ``bulk_update`` on 10,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from sqlalchemy import Integer, String, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository, create_engine
from baserepo.testing import ensure_database

TABLE = "bench_row_updates"
SQLITE_FILE = Path(tempfile.gettempdir()) / "baserepo_bench_rows.sqlite3"
URLS = {
    "postgresql": os.environ.get(
        "BASEREPO_BENCH_POSTGRESQL_URL",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench",
    ),
    "sqlite": f"sqlite+aiosqlite:///{SQLITE_FILE}",
    "mariadb": os.environ.get(
        "BASEREPO_BENCH_MARIADB_URL",
        "mysql+asyncmy://root@127.0.0.1:3306/baserepo_bench?charset=utf8mb4",
    ),
}


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    department: Mapped[str | None] = mapped_column(String(50))
    salary: Mapped[int | None] = mapped_column(Integer)


def new_values(count: int, run: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "salary": 10_000 * run + i, "department": f"d{run}-{i % 997}"}
        for i in range(1, count + 1)
    ]


async def seed(url: str, count: int) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(delete(Row))
        await conn.execute(
            insert(Row),
            [
                {"id": i, "name": f"u{i}", "department": None, "salary": 0}
                for i in range(1, count + 1)
            ],
        )
    await engine.dispose()


async def check(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    async with AsyncSession(engine) as session:
        stored = {r.id: (r.salary, r.department) for r in await session.scalars(select(Row))}
    await engine.dispose()
    wrong = [r["id"] for r in rows if stored[r["id"]] != (r["salary"], r["department"])]
    if wrong:
        raise SystemExit(f"{len(wrong)} rows without their new values, e.g. id {wrong[0]}")


async def time_ours(url: str, rows: list[dict[str, Any]]) -> float:
    engine = create_engine(url)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()  # connected before the clock starts, as for the others
        start = time.perf_counter()
        result = await BaseRepository(Row, session).bulk_update_rows(rows)
        seconds = time.perf_counter() - start
    await engine.dispose()
    if result.success_count != len(rows):
        raise SystemExit(f"bulk_update_rows changed {result.success_count} of {len(rows)}")
    return seconds


async def time_loop(url: str, rows: list[dict[str, Any]]) -> float:
    engine = create_engine(url)
    async with AsyncSession(engine) as session:
        await session.connection()
        start = time.perf_counter()
        for row in rows:
            await session.execute(
                update(Row)
                .where(Row.id == row["id"])
                .values(salary=row["salary"], department=row["department"])
            )
        await session.commit()
        seconds = time.perf_counter() - start
    await engine.dispose()
    return seconds


_django_model: Any = None


def django_ready(database: str) -> bool:
    """Configure Django once, for the first database that asks (settings are global)."""
    global _django_model
    if _django_model is not None:
        return True
    try:
        import django
        from django.conf import settings
    except ImportError:
        return False
    if database == "postgresql":
        parts = urlsplit(URLS["postgresql"].replace("+asyncpg", ""))
        db = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "postgres",
            "HOST": parts.hostname or "127.0.0.1",
            "PORT": parts.port or 5432,
        }
    elif database == "sqlite":
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(SQLITE_FILE)}
    else:
        return False
    settings.configure(DATABASES={"default": db}, INSTALLED_APPS=[], USE_TZ=False)
    django.setup()
    from django.db import models

    class DjangoRow(models.Model):
        name = models.CharField(max_length=100)
        department = models.CharField(max_length=50, null=True)
        salary = models.IntegerField(null=True)

        class Meta:
            app_label = "bench"
            db_table = TABLE
            managed = False

    _django_model = DjangoRow
    return True


def time_django(rows: list[dict[str, Any]], batch_size: int | None) -> float:
    from django.db import connection, transaction

    model = _django_model
    connection.ensure_connection()
    start = time.perf_counter()
    objs = [model(**row) for row in rows]
    with transaction.atomic():
        model.objects.bulk_update(objs, ["salary", "department"], batch_size=batch_size)
    seconds = time.perf_counter() - start
    connection.close()  # SQLite: let the next writer in
    return seconds


def measure(database: str, count: int, repeat: int, django_db: str | None) -> dict[str, float]:
    url = URLS[database]
    if database != "sqlite":
        asyncio.run(ensure_database(url))
    times: dict[str, list[float]] = {
        "bulk_update_rows": [],
        "django": [],
        "django b=1000": [],
        "loop": [],
    }
    run = 0
    for _ in range(repeat):
        for method in times:
            if method.startswith("django") and django_db != database:
                continue
            run += 1
            rows = new_values(count, run)
            asyncio.run(seed(url, count))
            if method == "bulk_update_rows":
                seconds = asyncio.run(time_ours(url, rows))
            elif method == "loop":
                seconds = asyncio.run(time_loop(url, rows))
            else:
                seconds = time_django(rows, None if method == "django" else 1_000)
            asyncio.run(check(url, rows))
            times[method].append(seconds)
    return {method: statistics.median(spent) for method, spent in times.items() if spent}


def measure_apart(database: str, count: int, repeat: int) -> dict[str, float]:
    """``measure`` in a process of its own (Django's settings are per process): method ->
    median seconds."""
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            database,
            "--rows",
            str(count),
            "--repeat",
            str(repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    medians: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one database
    args = parser.parse_args(argv)
    if args.one:
        # Django's settings are per process: each database is measured in a process of its own.
        django_db = args.one if django_ready(args.one) else None
        print(json.dumps(measure(args.one, args.rows, args.repeat, django_db)))
        return 0
    print(f"{args.rows:,} rows, distinct values per row, median of {args.repeat} runs")
    print(
        f"{'database':<11} {'method':<17} {'seconds':>8} {'rows/s':>9} {'bulk_update_rows is':>20}"
    )
    for database in args.databases:
        medians = measure_apart(database, args.rows, args.repeat)
        ours = medians["bulk_update_rows"]
        for method, seconds in medians.items():
            ratio = "" if method == "bulk_update_rows" else f"{seconds / ours:.1f}x faster"
            print(
                f"{database:<11} {method:<17} {seconds:>8.3f} {args.rows / seconds:>9,.0f} "
                f"{ratio:>20}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
