"""What a commit per batch costs COPY on PostgreSQL (raw asyncpg, no baserepo): 100,000 of the
harness's rows in one transaction, and in batches of 2,000 / 10,000 with or without a commit
after each, median of --repeat runs. The reason bulk_create's PostgreSQL default batch is
10,000 (docs/performance.md).

    .venv/bin/python bench/probes/copy_commits.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import COLUMNS, as_tuple, generate_rows

DSN = "postgresql://postgres@127.0.0.1:5432/baserepo_bench"
TABLE = "bench_copy_commits"
DDL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (id serial PRIMARY KEY, name varchar(100) NOT NULL,
    email varchar(255) UNIQUE NOT NULL, department varchar(50), salary int,
    is_active bool NOT NULL, created_at timestamp NOT NULL)
"""
ROWS = 100_000
WAYS = ((ROWS, False), (2_000, True), (2_000, False), (10_000, True))
"""(rows per COPY, commit after each)."""


async def one_run(conn: asyncpg.Connection, size: int, commit_each: bool, tag: str) -> float:
    rows = generate_rows(ROWS, tag)
    await conn.execute(DDL)
    await conn.execute("CHECKPOINT")
    start = time.perf_counter()
    transaction = conn.transaction()
    await transaction.start()
    for first in range(0, ROWS, size):
        records = list(map(as_tuple, rows[first : first + size]))
        await conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
        if commit_each:
            await transaction.commit()
            transaction = conn.transaction()
            await transaction.start()
    await transaction.commit()
    return ROWS / (time.perf_counter() - start)


async def main(repeat: int) -> None:
    conn = await asyncpg.connect(DSN)
    rates: dict[tuple[int, bool], list[float]] = {way: [] for way in WAYS}
    try:
        for run in range(repeat):
            for size, commit_each in WAYS:
                rate = await one_run(conn, size, commit_each, f"r{run}s{size}{commit_each}")
                rates[(size, commit_each)].append(rate)
        await conn.execute(f"DROP TABLE {TABLE}")
    finally:
        await conn.close()
    print(f"COPY of {ROWS:,} rows, median of {repeat}")
    for (size, commit_each), values in rates.items():
        how = "a commit after each" if commit_each else "one transaction"
        print(f"  batches of {size:>7,}, {how:<20} {statistics.median(values):>9,.0f} rows/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main(parser.parse_args().repeat))
