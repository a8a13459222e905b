"""Where bulk_upsert's time goes on PostgreSQL, statement by statement, in raw asyncpg (no
baserepo, no SQLAlchemy in the timed part): 10,000 of the harness's rows, the first 5,000 of
them already in the table with another salary, so half are updated and half inserted. Each
way runs in one transaction on a reset table (emptied and, but for bulk_create's, the 5,000
rows copied back, untimed), the ways rotated round after round after one untimed round that
prepares the statements, as a pooled connection has them; median of --repeat rounds, in
seconds. The table printed is the one docs/performance.md quotes ("bulk_upsert on
PostgreSQL").

The statements are what the library sends, written out by hand: bulk_create's COPY path
(keys drawn from the sequence, then COPY; ``_bulk/postgresql_asyncpg.py``), the ``INSERT ...
SELECT FROM unnest(...) ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM excluded``
statement (``_bulk/postgresql.py``, ``upsert``), and the staged way (``_bulk/postgresql_stage.py``):
COPY into a temporary table, then one statement with an UPDATE and an INSERT ... WHERE NOT
EXISTS as CTEs, answering with one row of arrays. The split ways run that UPDATE and an
INSERT as statements of their own, to time each and variants of each.

    .venv/bin/python bench/probes/upsert_statements.py [--repeat 5]

The database: BASEREPO_BENCH_POSTGRESQL_URL, else
postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import COLUMNS, BenchUser, as_tuple, fresh_table, generate_rows

from baserepo import create_engine
from baserepo.testing import ensure_database

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

URL = os.environ.get(
    "BASEREPO_BENCH_POSTGRESQL_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
)
ROWS = 10_000
EXISTING = ROWS // 2
TABLE = BenchUser.__tablename__
STAGE = "bench_upsert_stage"
NAMES = ", ".join(COLUMNS)
UPDATED = [c for c in COLUMNS if c != "email"]
"""What an existing row gets: every given column but the unique key (``update_fields=None``)."""

KEYS_SQL = "SELECT array_agg(nextval($1::regclass)) FROM generate_series(1, $2)"
ON_CONFLICT_SQL = (
    f"INSERT INTO {TABLE} ({NAMES}) SELECT {NAMES} FROM unnest($1::varchar(100)[], "
    "$2::varchar(255)[], $3::varchar(50)[], $4::int[], $5::bool[], $6::timestamp[]) "
    f"WITH ORDINALITY AS src({NAMES}, ord) "
    "ON CONFLICT (email) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATED)
    + " WHERE "
    + " OR ".join(f"{TABLE}.{c} IS DISTINCT FROM excluded.{c}" for c in UPDATED)
    + " RETURNING id, xmax = 0, email"
)
# One simple-query round trip, as the library makes and empties its stage.
STAGE_RESET_SQL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} ON COMMIT DROP AS "
    f"SELECT {NAMES} FROM {TABLE} WITH NO DATA; TRUNCATE {STAGE}"
)
SET_FROM_STAGE = ", ".join(f"{c} = s.{c}" for c in UPDATED)
MATCH = f"{TABLE}.email = s.email"
DIFFERS = " OR ".join(f"{TABLE}.{c} IS DISTINCT FROM s.{c}" for c in UPDATED)
UPDATE_SQL = {
    "as used": f"UPDATE {TABLE} SET {SET_FROM_STAGE} FROM {STAGE} AS s "
    f"WHERE {MATCH} AND ({DIFFERS}) RETURNING {TABLE}.id, {TABLE}.email",
    "without IS DISTINCT FROM": f"UPDATE {TABLE} SET {SET_FROM_STAGE} FROM {STAGE} AS s "
    f"WHERE {MATCH} RETURNING {TABLE}.id, {TABLE}.email",
    "without RETURNING": f"UPDATE {TABLE} SET {SET_FROM_STAGE} FROM {STAGE} AS s "
    f"WHERE {MATCH} AND ({DIFFERS})",
    "RETURNING id only": f"UPDATE {TABLE} SET {SET_FROM_STAGE} FROM {STAGE} AS s "
    f"WHERE {MATCH} AND ({DIFFERS}) RETURNING {TABLE}.id",
}
NEW_FROM_STAGE = (
    f"INSERT INTO {TABLE} ({NAMES}) SELECT {', '.join(f's.{c}' for c in COLUMNS)} "
    f"FROM {STAGE} AS s WHERE NOT EXISTS (SELECT FROM {TABLE} WHERE {MATCH})"
)
INSERT_SQL = {
    "ON CONFLICT DO UPDATE": f"{NEW_FROM_STAGE} ON CONFLICT (email) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in UPDATED)
    + " WHERE "
    + " OR ".join(f"{TABLE}.{c} IS DISTINCT FROM excluded.{c}" for c in UPDATED)
    + " RETURNING id, email",
    "DO NOTHING": f"{NEW_FROM_STAGE} ON CONFLICT (email) DO NOTHING RETURNING id, email",
    "plain": f"{NEW_FROM_STAGE} RETURNING id, email",
    "plain without RETURNING": NEW_FROM_STAGE,
}
ONE_STATEMENT_SQL = (
    f"WITH updated AS ({UPDATE_SQL['as used']}), "
    f"inserted AS ({NEW_FROM_STAGE} RETURNING id, email) "
    "SELECT * FROM (SELECT array_agg(id), array_agg(email) FROM updated) AS u, "
    "(SELECT array_agg(id), array_agg(email) FROM inserted) AS c"
)

Steps = dict[str, float]
"""Seconds of each timed step of one call, in order; "total" is the whole transaction."""


class Probe:
    """One asyncpg connection, held for the whole run like a pooled one."""

    def __init__(self, conn: asyncpg.Connection, sequence: str) -> None:
        self.conn = conn
        self.sequence = sequence
        self.rows = generate_rows(ROWS, "upsert")
        self.existing = [as_tuple({**r, "salary": r["salary"] - 1}) for r in self.rows[:EXISTING]]
        self.salaries = sum(r["salary"] for r in self.rows)

    async def reset(self, seeded: bool) -> None:
        await self.conn.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
        if seeded:
            await self.conn.copy_records_to_table(TABLE, records=self.existing, columns=COLUMNS)

    async def check_table(self) -> None:
        """Every row there once, with the salary the call gave it."""
        count, total = await self.conn.fetchrow(f"SELECT count(*), sum(salary) FROM {TABLE}")
        if (count, total) != (ROWS, self.salaries):
            raise SystemExit(f"{TABLE} holds {count} rows, salaries {total}: not the upsert's")

    async def timed(self, work: Callable[[Callable[[str], None]], Awaitable[None]]) -> Steps:
        """``work`` in one transaction; it calls ``mark(step)`` after each step."""
        steps: Steps = {}
        start = last = time.perf_counter()

        def mark(step: str) -> None:
            nonlocal last
            now = time.perf_counter()
            steps[step] = now - last
            last = now

        async with self.conn.transaction():
            mark("BEGIN")  # the transaction starts on entry
            await work(mark)
        mark("commit")
        steps["total"] = last - start
        return steps

    async def bulk_create(self, mark: Callable[[str], None]) -> None:
        ids = await self.conn.fetchval(KEYS_SQL, self.sequence, ROWS)
        mark("keys drawn")
        records = [(key, *as_tuple(r)) for key, r in zip(ids, self.rows, strict=True)]
        await self.conn.copy_records_to_table(TABLE, records=records, columns=("id", *COLUMNS))
        mark("COPY")

    async def on_conflict(self, mark: Callable[[str], None]) -> None:
        columns = list(zip(*map(as_tuple, self.rows), strict=True))
        returned = await self.conn.fetch(ON_CONFLICT_SQL, *columns)
        mark("statement")
        check(sum(1 for r in returned if not r[1]), sum(1 for r in returned if r[1]))

    async def stage(self, mark: Callable[[str], None]) -> None:
        await self.conn.execute(STAGE_RESET_SQL)
        mark("stage made/emptied")
        records = list(map(as_tuple, self.rows))
        await self.conn.copy_records_to_table(STAGE, records=records, columns=COLUMNS)
        mark("COPY into the stage")

    async def one_statement(self, mark: Callable[[str], None]) -> None:
        await self.stage(mark)
        # In a SAVEPOINT, as the library runs it (a unique violation falls back to ON CONFLICT).
        async with self.conn.transaction():
            mark("SAVEPOINT")
            updated_ids, _, inserted_ids, _ = await self.conn.fetchrow(ONE_STATEMENT_SQL)
            mark("statement")
        mark("RELEASE")
        check(len(updated_ids), len(inserted_ids))

    def split(self, update: str, insert: str) -> Callable[[Callable[[str], None]], Awaitable[None]]:
        async def run(mark: Callable[[str], None]) -> None:
            await self.stage(mark)
            # fetch: the extended protocol and a prepared statement, as the library runs
            # them (execute() without arguments would use the simple query protocol).
            updated = await self.conn.fetch(UPDATE_SQL[update])
            mark("UPDATE")
            inserted = await self.conn.fetch(INSERT_SQL[insert])
            mark("INSERT")
            # Without RETURNING nothing comes back: the table's contents are checked after.
            check(len(updated) or EXISTING, len(inserted) or ROWS - EXISTING)

        return run


def check(updated: int, inserted: int) -> None:
    if (updated, inserted) != (EXISTING, ROWS - EXISTING):
        raise SystemExit(f"expected {EXISTING} updated and inserted, got {updated}, {inserted}")


def ways(probe: Probe) -> dict[str, tuple[bool, Callable[..., Awaitable[None]]]]:
    """Name -> (the table seeded with the 5,000 existing rows, the work)."""
    found: dict[str, tuple[bool, Callable[..., Awaitable[None]]]] = {
        "bulk_create": (False, probe.bulk_create),
        "ON CONFLICT": (True, probe.on_conflict),
        "one statement": (True, probe.one_statement),
    }
    for insert in INSERT_SQL:
        found[f"split: UPDATE as used, INSERT {insert}"] = (True, probe.split("as used", insert))
    for update in list(UPDATE_SQL)[1:]:
        found[f"split: UPDATE {update}, INSERT ON CONFLICT DO UPDATE"] = (
            True,
            probe.split(update, "ON CONFLICT DO UPDATE"),
        )
    return found


async def measure(repeat: int) -> dict[str, dict[str, float]]:
    """Way -> step -> median seconds."""
    await ensure_database(URL)
    engine = create_engine(URL)
    try:
        await fresh_table(engine, BenchUser)
    finally:
        await engine.dispose()
    # postgresql+asyncpg://user@host:port/db -> postgresql://user@host:port/db
    conn = await asyncpg.connect("postgresql://" + URL.split("://", 1)[1])
    timings: dict[str, list[Steps]] = {}
    try:
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", TABLE)
        probe = Probe(conn, sequence)
        found = ways(probe)
        names = list(found)
        for run in range(repeat + 1):  # round 0: untimed, prepares every statement
            for name in names[run % len(names) :] + names[: run % len(names)]:
                seeded, work = found[name]
                await probe.reset(seeded)
                steps = await probe.timed(work)
                await probe.check_table()
                if run:
                    timings.setdefault(name, []).append(steps)
        await conn.execute(f"DROP TABLE {TABLE}")
    finally:
        await conn.close()
    return {
        name: {step: statistics.median(run[step] for run in runs) for step in runs[0]}
        for name, runs in timings.items()
    }


def report(medians: dict[str, dict[str, float]], repeat: int) -> None:
    def s(name: str, step: str = "total") -> str:
        return f"{medians[name][step]:.3f}"

    split = "split: UPDATE as used, INSERT ON CONFLICT DO UPDATE"
    inserts = [f"split: UPDATE as used, INSERT {insert}" for insert in INSERT_SQL]
    updates = [split] + [
        f"split: UPDATE {update}, INSERT ON CONFLICT DO UPDATE" for update in list(UPDATE_SQL)[1:]
    ]
    one = medians["one statement"]
    stage_steps = ("stage made/emptied", "COPY into the stage")
    print(
        f"bulk_upsert's statements in raw asyncpg: {ROWS:,} rows, {EXISTING:,} existing, "
        f"median of {repeat}, seconds (each step's own median: the steps need not add up)"
    )
    print()
    print("| what | s |")
    print("| --- | ---: |")
    print(
        f"| `bulk_create`'s path raw (keys drawn, COPY {ROWS:,} rows into the empty table) "
        f"| {s('bulk_create')} |"
    )
    print(f"| the ON CONFLICT statement (unnest arrays), raw | {s('ON CONFLICT')} |")
    print(
        f"| COPY into a temp stage, then the one statement (UPDATE and INSERT as CTEs) "
        f"in a SAVEPOINT, as the library does | {s('one statement')} |"
    )
    print(
        f"| of that: BEGIN {one['BEGIN']:.3f}, stage made/emptied "
        f"{one['stage made/emptied']:.3f}, COPY {ROWS:,} into the stage "
        f"{one['COPY into the stage']:.3f}, SAVEPOINT {one['SAVEPOINT']:.3f}, the statement "
        f"{one['statement']:.3f}, RELEASE {one['RELEASE']:.3f}, commit {one['commit']:.3f} | |"
    )
    print(
        "| COPY into a temp stage, `UPDATE ... FROM stage`, `INSERT ... SELECT ... WHERE NOT "
        f"EXISTS ... ON CONFLICT DO UPDATE` (three statements) | {s(split)} |"
    )
    parts = medians[split]
    print(
        f"| of that: stage made/emptied + COPY "
        f"{sum(parts[step] for step in stage_steps):.3f}, the UPDATE of {EXISTING:,} "
        f"{parts['UPDATE']:.3f}, the INSERT of {ROWS - EXISTING:,} {parts['INSERT']:.3f}, "
        f"commit {parts['commit']:.3f} | |"
    )
    print(
        f"| the INSERT of {ROWS - EXISTING:,}: "
        + " / ".join(INSERT_SQL)
        + " | "
        + " / ".join(s(name, "INSERT") for name in inserts)
        + " |"
    )
    print(
        f"| the UPDATE of {EXISTING:,}: "
        + " / ".join(UPDATE_SQL)
        + " | "
        + " / ".join(s(name, "UPDATE") for name in updates)
        + " |"
    )


async def main(repeat: int) -> None:
    report(await measure(repeat), repeat)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeat))
