"""baserepo's bulk paths side by side with what users would pick instead, in one run.

    python bench/harness/harness.py          # everything: ~4-5 minutes on 2 cores
    python bench/harness/harness.py --quick  # a smoke run: 1k and 10k rows, 3 runs, ~1 minute
    python bench/harness/harness.py --databases postgresql --sizes 1000,10000 --repeat 5

Needs the ``bench`` extra (``pip install -e '.[bench]'``) and the servers of the databases
asked for. What it measures (see ``docs/benchmarks.md`` for each method):

* PostgreSQL inserts at each size: raw asyncpg COPY without ids (the practical limit), asyncpg
  ``unnest`` with ``RETURNING id``, COPY into a temp table + ``INSERT ... SELECT ... RETURNING
  id``, SQLAlchemy ``add_all`` + flush and ORM ``insert().returning()``, advanced-alchemy
  ``add_many``, Django ``bulk_create`` (its own process), Tortoise ``bulk_create``,
  ``repo.create`` in a loop, and baserepo ``bulk_create`` plain, with a subscribed event handler
  and with ``ignore_conflicts=True`` against 10% pre-existing rows.
* PostgreSQL ``bulk_update`` / ``bulk_delete`` (soft, hard) of ~30% of a 100k-row table, each
  against the single Core statement with ``RETURNING id``.
* SQLite (a temp file) and MariaDB inserts against their raw drivers' ``executemany``.
* Peak RSS growth of a streamed 1,000,000-row ``bulk_create`` against a 100,000-row one.

Method: every method gets the same generated rows (a list of dicts in memory), a freshly created
table and an open connection (on PostgreSQL, a CHECKPOINT too, so that no call pays for the
previous one's WAL); it is timed from the rows to its commit. Within one repetition the methods
run in an order rotated on every repetition; each figure is the median of
``--repeat`` repetitions, and every result is also given as a ratio to the limit and to
baserepo in the same run. After each call the harness counts the table's rows and, where ids
come back, checks each id against its own input row. Console tables, then
``bench/results/harness.json`` and the chart ``bench/results/harness.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import (
    CONFLICT_EVERY,
    BenchStaff,
    BenchUser,
    Outcome,
    conflicting,
    drop_tables,
    fresh_table,
    generate_rows,
    touched,
)
from alternatives.ours import Baserepo
from alternatives.postgresql import (
    AdvancedAlchemy,
    CoreStatements,
    RawAsyncpg,
    SqlAlchemyOrm,
    Tortoise,
)
from harness_report import Measurement, render_report
from sqlalchemy import make_url

from baserepo import create_engine

# The demo's helper: CREATE DATABASE on the server when it is missing.
from baserepo.testing import ensure_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

HARNESS = Path(__file__).resolve().parent
"""This folder: django_bulk.py and memory_probe.py run from here, each in a process."""
RESULTS = HARNESS.parent / "results"
URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/baserepo_bench?charset=utf8mb4",
}
DATABASES = ("postgresql", "sqlite", "mariadb")
FULL = {"sizes": [1_000, 10_000, 100_000], "repeat": 5, "change_rows": 100_000}
QUICK = {"sizes": [1_000, 10_000], "repeat": 3, "change_rows": 10_000}
MEMORY_ROWS = (100_000, 1_000_000)
WARM_UP_ROWS = 1_000

Rows = list[dict[str, Any]]


class RowSet(list[dict[str, Any]]):
    """The generated rows plus the tag that generated them (Django's process rebuilds them)."""

    def __init__(self, count: int, tag: str) -> None:
        super().__init__(generate_rows(count, tag))
        self.tag = tag


@dataclass
class Method:
    """One way of doing the job, and how to check that it did it."""

    key: str
    label: str
    run: Callable[[Rows], Awaitable[Outcome]]
    fresh: Callable[[], Awaitable[None]]
    """Untimed, before each call: a freshly created table."""
    count: Callable[[], Awaitable[int]]
    """Untimed, after each call: rows in the table."""
    ids: bool = True
    ours: bool = False
    sample: int = 0
    """Time at most this many rows (0: all)."""
    prepare: Callable[[Rows], Awaitable[None]] | None = None
    """Untimed, after ``fresh``: rows that must exist before the call."""
    expect: Callable[[Rows], tuple[int, int]] = lambda rows: (len(rows), len(rows))
    """(rows the call must report written, rows the table must then hold)."""
    timed_rows: Callable[[Rows], int] = len
    """The numerator of rows/s."""
    expected_emails: Callable[[Rows], list[str]] | None = None
    """Input rows' emails in the order the returned ids must follow (None: no id check)."""
    emails_of: Callable[[list[Any]], Awaitable[dict[Any, str]]] | None = None
    left_unchanged: Callable[[], Awaitable[int]] | None = None
    """Untimed, after an update/delete: matching rows it did not change (must be 0)."""
    note: str = ""


@dataclass
class Run:
    """What the whole run found, for the report."""

    args: argparse.Namespace
    measurements: list[Measurement] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def rotated(methods: list[Method], repetition: int, repeat: int) -> list[Method]:
    # Each repetition starts further along, so that no method always runs first (on a cold
    # server) or right after the same neighbour.
    stride = max(1, len(methods) // max(repeat, 1))
    shift = repetition * stride % len(methods)
    return methods[shift:] + methods[:shift]


async def check(method: Method, rows: Rows, outcome: Outcome) -> bool | None:
    """Raise if the call did not do exactly its job; say whether ids follow input order."""
    written, in_table = method.expect(rows)
    if outcome.written != written:
        raise RuntimeError(f"{method.label}: reported {outcome.written} rows, expected {written}")
    found = await method.count()
    if found != in_table:
        raise RuntimeError(f"{method.label}: the table holds {found} rows, expected {in_table}")
    if method.left_unchanged is not None and (left := await method.left_unchanged()):
        raise RuntimeError(f"{method.label}: left {left} matching rows unchanged")
    if not method.ids:
        return None
    if outcome.ids is None or len(outcome.ids) != written or len(set(outcome.ids)) != written:
        got = None if outcome.ids is None else len(set(outcome.ids))
        raise RuntimeError(f"{method.label}: {got} distinct ids back for {written} rows")
    if method.expected_emails is None or method.emails_of is None:
        return None
    stored = await method.emails_of(outcome.ids)
    expected = method.expected_emails(rows)
    in_order = all(stored.get(i) == e for i, e in zip(outcome.ids, expected, strict=True))
    if method.ours and not in_order:
        raise RuntimeError(f"{method.label}: ids are not in input order")
    return in_order


async def measure(
    run: Run,
    database: str,
    section: str,
    sizes: list[int],
    methods: list[Method],
    *,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    repeat = run.args.repeat
    for size in sizes:
        found = {
            m.key: Measurement(
                database=database,
                section=section,
                method=m.key,
                label=m.label,
                rows=size,
                ids=m.ids,
                ours=m.ours,
                note=m.note,
            )
            for m in methods
        }
        for repetition in range(repeat):
            rows = RowSet(size, f"s{size}r{repetition}")
            started = time.perf_counter()
            for method in rotated(methods, repetition, repeat):
                given = rows[: method.sample] if method.sample else rows
                await method.fresh()
                if method.prepare is not None:
                    await method.prepare(given)
                if settle is not None:
                    await settle()
                gc.collect()
                outcome = await method.run(given)
                in_order = await check(method, given, outcome)
                measurement = found[method.key]
                measurement.seconds.append(outcome.seconds)
                measurement.timed_rows = method.timed_rows(given)
                if in_order is not None:
                    measurement.ids_in_order = bool(
                        in_order and measurement.ids_in_order is not False
                    )
            print(
                f"  {database} {section} {size:,} rows, run {repetition + 1}/{repeat} "
                f"({time.perf_counter() - started:.1f}s): "
                + ", ".join(
                    f"{m.method} {m.timed_rows / m.seconds[-1] / 1000:,.1f}k/s"
                    for m in found.values()
                ),
                flush=True,
            )
        run.measurements += found.values()


async def warm_up(methods: list[Method]) -> None:
    """Untimed: connections, dialect set-up, statement caches, Django's and Tortoise's start."""
    rows = RowSet(WARM_UP_ROWS, "warm")
    for method in methods:
        await method.fresh()
        if method.prepare is not None:
            await method.prepare(rows)
        await method.run(rows[:100] if method.sample else rows)


# -- Django, in a process of its own -----------------------------------------------------


class DjangoProcess:
    """``bench/harness/django_bulk.py``, kept alive for the run; one JSON line each way per call."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.url = parsed.render_as_string(hide_password=False)
        self.process: asyncio.subprocess.Process | None = None
        self.version = "?"
        self.last: dict[str, Any] = {}

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HARNESS / "django_bulk.py"),
            "--url",
            self.url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=HARNESS,
        )
        self.version = (await self._answer())["ready"]

    async def _answer(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("the Django process exited (its error is above)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def bulk_create(self, rows: Rows) -> Outcome:
        assert self.process is not None
        assert self.process.stdin is not None
        assert isinstance(rows, RowSet), "Django rebuilds the rows from their tag"
        request = {"rows": len(rows), "tag": rows.tag}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        self.last = await self._answer()
        if not self.last["ids_match"] or self.last["first_email"] != rows[0]["email"]:
            raise RuntimeError("Django: other rows than the harness's, or ids not their rows'")
        # The ids stay in Django's process; it reports how many distinct ones came back.
        ids = list(range(self.last["distinct_ids"]))
        return Outcome(self.last["seconds"], self.last["written"], ids)

    async def count(self) -> int:
        return int(self.last.get("count", -1))

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b'{"stop": true}\n')
            await self.process.stdin.drain()
            self.process.stdin.close()
            await asyncio.wait_for(self.process.wait(), timeout=30)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.process.kill()
            await self.process.wait()


async def nothing() -> None:
    return None


def emails(rows: Rows) -> list[str]:
    return [r["email"] for r in rows]


# -- PostgreSQL ----------------------------------------------------------------------------


async def bench_postgresql(run: Run) -> None:
    args = run.args
    url = os.environ.get("BASEREPO_BENCH_POSTGRESQL_URL", URLS["postgresql"])
    print(f"postgresql: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    await ensure_database(url)
    engine = create_engine(url)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    raw = RawAsyncpg(await asyncpg.connect(dsn))
    tortoise = Tortoise(url)
    django = DjangoProcess(url)
    try:
        await tortoise.open()
        await django.start()
        server = raw.conn.get_server_version()
        run.versions["postgresql"] = f"{server.major}.{server.minor}"
        run.versions["django"] = django.version

        async def users() -> None:
            await fresh_table(engine, BenchUser)

        async def pre_existing(rows: Rows) -> None:
            await raw.copy_quietly(conflicting(rows))

        def new_emails(rows: Rows) -> list[str]:
            return [r["email"] for i, r in enumerate(rows) if i % CONFLICT_EVERY]

        def after_conflicts(rows: Rows) -> tuple[int, int]:
            return len(rows) - len(conflicting(rows)), len(rows)

        orm, ours = SqlAlchemyOrm(engine), Baserepo(engine)
        ids = {"expected_emails": emails, "emails_of": raw.emails_of}
        same = {"fresh": users, "count": raw.count}
        sample = args.create_loop_sample
        creates = [
            Method("copy", "asyncpg COPY", raw.copy, ids=False, **same),
            Method("asyncpg_unnest", "asyncpg unnest RETURNING", raw.unnest, **same, **ids),
            Method("asyncpg_copy_temp", "asyncpg COPY temp+INSERT", raw.copy_temp, **same, **ids),
            Method("sa_add_all", "SQLAlchemy add_all+flush", orm.add_all, **same, **ids),
            Method(
                "sa_insert_returning",
                "SQLAlchemy insert().returning()",
                orm.insert_returning,
                **same,
                **ids,
            ),
            Method(
                "advanced_alchemy",
                "advanced-alchemy add_many",
                AdvancedAlchemy(engine).add_many,
                **same,
                **ids,
            ),
            Method(
                "django",
                "Django bulk_create",
                django.bulk_create,
                fresh=nothing,
                count=django.count,
                note="own process, own table; ids checked there",
            ),
            Method("tortoise", "Tortoise bulk_create", tortoise.bulk_create, ids=False, **same),
            Method(
                "create_loop",
                "baserepo create() loop",
                ours.create_loop,
                ours=True,
                sample=sample,
                note=f"timed on at most {sample:,} creates per run",
                **same,
                **ids,
            ),
            Method(
                "bulk_create", "baserepo bulk_create", ours.bulk_create, ours=True, **same, **ids
            ),
            Method(
                "bulk_create_events",
                "baserepo bulk_create +events",
                ours.bulk_create_events,
                ours=True,
                note="emit_events=True, one subscribed handler",
                **same,
                **ids,
            ),
            Method(
                "bulk_create_ignore",
                "baserepo bulk_create ignore_conflicts",
                ours.bulk_create_ignore,
                ours=True,
                prepare=pre_existing,
                expect=after_conflicts,
                fresh=users,
                count=raw.count,
                expected_emails=new_emails,
                emails_of=raw.emails_of,
                note=f"1 in {CONFLICT_EVERY} rows pre-exists; rows/s counts every input row",
            ),
        ]
        await warm_up(creates)
        await measure(run, "postgresql", "create", args.sizes, creates, settle=raw.checkpoint)

        staff_table = BenchStaff.__tablename__
        core = CoreStatements(engine)

        async def staff() -> None:
            await fresh_table(engine, BenchStaff)

        async def populated(rows: Rows) -> None:
            await raw.copy_quietly(rows, staff_table)
            await raw.analyze(staff_table)

        async def count_staff() -> int:
            return await raw.count(staff_table)

        def kept(rows: Rows) -> tuple[int, int]:
            return touched(rows), len(rows)

        def removed(rows: Rows) -> tuple[int, int]:
            return touched(rows), len(rows) - touched(rows)

        base = {"fresh": staff, "count": count_staff, "prepare": populated, "timed_rows": touched}

        def change(key: str, label: str, call: Any, kind: str, ours: bool = False) -> Method:
            return Method(
                key,
                label,
                call,
                ours=ours,
                expect=removed if kind == "delete" else kept,
                left_unchanged=functools.partial(raw.left_unchanged, kind),
                **base,
            )

        changes = [
            change("core_update", "Core UPDATE ... RETURNING id", core.update, "update"),
            change("bulk_update", "baserepo bulk_update", ours.bulk_update, "update", True),
            change(
                "core_soft_delete",
                "Core UPDATE SET deleted_at ... RETURNING id",
                core.soft_delete,
                "soft_delete",
            ),
            change(
                "bulk_soft_delete",
                "baserepo bulk_delete (soft)",
                ours.bulk_soft_delete,
                "soft_delete",
                True,
            ),
            change("core_delete", "Core DELETE ... RETURNING id", core.delete, "delete"),
            change(
                "bulk_hard_delete",
                "baserepo bulk_delete (hard)",
                ours.bulk_hard_delete,
                "delete",
                True,
            ),
        ]
        await warm_up(changes)
        await measure(
            run, "postgresql", "change", [args.change_rows], changes, settle=raw.checkpoint
        )
        await drop_tables(engine)
    finally:
        await django.stop()
        await tortoise.close()
        await raw.conn.close()
        await engine.dispose()
    await bench_memory(run, url)


async def bench_memory(run: Run, url: str) -> None:
    sizes = [n for n in MEMORY_ROWS if not (run.args.quick and n > 100_000)]
    if len(sizes) < len(MEMORY_ROWS):
        run.skipped.append("memory: the 1,000,000-row run (--quick); its bars are not judged")
    for rows in sizes:
        print(f"  memory: bulk_create of {rows:,} streamed rows in a fresh process", flush=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HARNESS / "memory_probe.py"),
            "--rows",
            str(rows),
            "--url",
            url,
            stdout=asyncio.subprocess.PIPE,
            cwd=HARNESS,
        )
        out, _ = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"memory_probe.py --rows {rows} failed ({process.returncode})")
        probe = json.loads(out.decode().strip().splitlines()[-1])
        if probe["written"] != rows:
            raise RuntimeError(f"memory probe wrote {probe['written']} of {rows} rows")
        run.memory.append(probe)


# -- SQLite and MariaDB --------------------------------------------------------------------


async def bench_sqlite(run: Run) -> None:
    from alternatives.sqlite import RawSqlite

    with tempfile.TemporaryDirectory(prefix="baserepo_harness_") as scratch:
        path = Path(scratch) / "bench.sqlite3"
        url = f"sqlite+aiosqlite:///{path}"
        print(f"sqlite: {url}", flush=True)
        engine = create_engine(url)
        raw = RawSqlite(path)
        try:
            await raw.open()
            async with engine.connect() as conn:
                version = await conn.exec_driver_sql("select sqlite_version()")
                run.versions["sqlite"] = str(version.scalar())

            async def users() -> None:
                await fresh_table(engine, BenchUser)

            same = {"fresh": users, "count": raw.count}
            ids = {"expected_emails": emails, "emails_of": raw.emails_of}
            methods = [
                Method(
                    "sqlite3_executemany",
                    "sqlite3 executemany (blocking)",
                    raw.sqlite3_executemany,
                    ids=False,
                    **same,
                ),
                Method(
                    "aiosqlite_executemany",
                    "aiosqlite executemany",
                    raw.aiosqlite_executemany,
                    ids=False,
                    **same,
                ),
                Method(
                    "bulk_create",
                    "baserepo bulk_create",
                    Baserepo(engine).bulk_create,
                    ours=True,
                    **same,
                    **ids,
                ),
            ]
            await warm_up(methods)
            await measure(run, "sqlite", "create", run.args.sizes, methods)
        finally:
            await raw.close()
            await engine.dispose()


async def bench_mariadb(run: Run) -> None:
    from alternatives.mariadb import RawAsyncmy

    url = os.environ.get("BASEREPO_BENCH_MARIADB_URL", URLS["mariadb"])
    print(f"mariadb: {make_url(url).render_as_string(hide_password=True)}", flush=True)
    await ensure_database(url)
    engine = create_engine(url)
    raw = RawAsyncmy(make_url(url))
    try:
        await raw.open()

        async def users() -> None:
            await fresh_table(engine, BenchUser)

        same = {"fresh": users, "count": raw.count}
        ids = {"expected_emails": emails, "emails_of": raw.emails_of}
        methods = [
            Method(
                "asyncmy_executemany", "asyncmy executemany", raw.executemany, ids=False, **same
            ),
            Method(
                "sa_add_all",
                "SQLAlchemy add_all+flush",
                SqlAlchemyOrm(engine).add_all,
                **same,
                **ids,
            ),
            Method(
                "bulk_create",
                "baserepo bulk_create",
                Baserepo(engine).bulk_create,
                ours=True,
                **same,
                **ids,
            ),
        ]
        await warm_up(methods)
        run.versions["mariadb"] = ".".join(map(str, engine.dialect.server_version_info or ()))
        await measure(run, "mariadb", "create", run.args.sizes, methods)
        await drop_tables(engine)
    finally:
        await raw.close()
        await engine.dispose()


SECTIONS = {"postgresql": bench_postgresql, "sqlite": bench_sqlite, "mariadb": bench_mariadb}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (~1 minute): sizes 1000,10000, 3 runs, a 10,000-row table for\n"
        "updates/deletes, no 1,000,000-row memory run",
    )
    parser.add_argument("--sizes", help="comma list of row counts (default 1000,10000,100000)")
    parser.add_argument("--repeat", type=int, help="runs per measurement, median (default 5)")
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help=f"comma list of {', '.join(DATABASES)} (default all)",
    )
    parser.add_argument(
        "--change-rows",
        type=int,
        help="rows in the table bulk_update/bulk_delete work on (default 100000)",
    )
    parser.add_argument(
        "--create-loop-sample",
        type=int,
        default=1_000,
        metavar="N",
        help="time repo.create on at most N rows per run (default 1000)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "harness.json")
    parser.add_argument("--chart", type=Path, default=RESULTS / "harness.png")
    parser.add_argument("--plain", action="store_true", help="plain-text tables, even with rich")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a bar fails")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    preset = QUICK if args.quick else FULL
    try:
        args.sizes = (
            [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
            if args.sizes
            else preset["sizes"]
        )
    except ValueError:
        parser.error(f"--sizes must be integers, got {args.sizes!r}")
    args.repeat = args.repeat or preset["repeat"]
    args.change_rows = args.change_rows or preset["change_rows"]
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = sorted(set(args.databases) - set(DATABASES))
    if unknown:
        parser.error(f"unknown databases {unknown}; choose from {', '.join(DATABASES)}")
    if args.repeat < 1 or args.change_rows < 10 or any(s < 10 for s in args.sizes):
        parser.error("--repeat must be positive, --sizes and --change-rows at least 10")
    return args


async def main_async(args: argparse.Namespace) -> int:
    run = Run(args)
    started = time.perf_counter()
    for name in DATABASES:
        if name in args.databases:
            await SECTIONS[name](run)
    if args.change_rows != FULL["change_rows"]:
        run.skipped.append(
            f"bulk_update/bulk_delete ran on a {args.change_rows:,}-row table, "
            f"not {FULL['change_rows']:,}"
        )
    absent = [d for d in DATABASES if d not in args.databases]
    if absent:
        run.skipped.append(f"databases not run (--databases): {', '.join(absent)}")
    missing = sorted(set(FULL["sizes"]) - set(args.sizes))
    if missing:
        run.skipped.append(f"sizes not run: {', '.join(f'{n:,}' for n in missing)}")
    return render_report(run, elapsed=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
