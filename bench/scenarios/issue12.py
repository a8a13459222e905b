"""Issue 12's figures in one run: ``bulk_upsert`` and ``bulk_update_rows`` against the
alternatives, one table with ratios, then the issue's bars.

    .venv/bin/python bench/scenarios/issue12.py                      # ~10 min on a quiet machine
    .venv/bin/python bench/scenarios/issue12.py --row-databases postgresql --row-repeat 1

- upsert (``upsert.py``, PostgreSQL): 10,000 rows of which half exist with another salary,
  ``bulk_upsert`` against ``bulk_create`` of the same rows into an empty table, advanced-alchemy's
  ``upsert_many`` and Core ``on_conflict_do_update``; median of ``--upsert-repeat`` rounds.
- per-row updates (``row_updates.py``, each database in a process of its own): 10,000 rows each
  given its own values, ``bulk_update_rows`` against Django's ``bulk_update`` (unbatched, and
  ``batch_size=1000``; PostgreSQL and SQLite) and a per-row UPDATE loop; median of
  ``--row-repeat``. Django's unbatched ``bulk_update`` on PostgreSQL alone takes minutes a run.

``ours/this`` is the rows/s of baserepo's method of the block (bulk_upsert, bulk_update_rows)
over the method's: above 1, baserepo's method is that many times faster.
Needs the ``bench`` extra (advanced-alchemy, Django, psycopg); the databases are those of
``upsert.py`` and ``row_updates.py`` (``BASEREPO_BENCH_POSTGRESQL_URL``,
``BASEREPO_BENCH_MARIADB_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the two scenarios it runs

import row_updates
import upsert

ROW_BAR = 10.0
"""The issue's bar: bulk_update_rows >= 10x Django's bulk_update on 10,000 rows."""
DJANGO = {"django": "Django bulk_update", "django b=1000": "Django bulk_update(batch_size=1000)"}
ROW_NAMES = {"bulk_update_rows": "baserepo bulk_update_rows", "loop": "per-row UPDATE loop"}


def line(block: str, database: str, method: str, seconds: float, rows: int, ours: float) -> str:
    return (
        f"{block:<17} {database:<11} {method:<40} {seconds:>8.3f} {rows / seconds:>9,.0f} "
        f"{seconds / ours:>9.2f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--upsert-repeat", type=int, default=5)
    parser.add_argument("--row-repeat", type=int, default=3)
    parser.add_argument("--row-databases", nargs="+", default=["postgresql", "sqlite", "mariadb"])
    args = parser.parse_args(argv)
    rows = args.rows
    upserts = asyncio.run(upsert.measure(rows, args.upsert_repeat))
    per_row = {
        db: row_updates.measure_apart(db, rows, args.row_repeat) for db in args.row_databases
    }

    print(
        f"issue 12: {rows:,} rows; bulk_upsert median of {args.upsert_repeat} "
        f"(half the rows existing), bulk_update_rows median of {args.row_repeat}"
    )
    header = (
        f"{'block':<17} {'database':<11} {'method':<40} {'seconds':>8} {'rows/s':>9} "
        f"{'ours/this':>10}"
    )
    print(header)
    print("-" * len(header))
    ours = upserts[upsert.UPSERT]
    for method, seconds in upserts.items():
        print(line("bulk_upsert", "postgresql", method, seconds, rows, ours))
    for database, medians in per_row.items():
        ours = medians["bulk_update_rows"]
        for method, seconds in medians.items():
            name = ROW_NAMES.get(method) or DJANGO[method]
            print(line("bulk_update_rows", database, name, seconds, rows, ours))

    rate = {name: rows / seconds for name, seconds in upserts.items()}
    verdicts = [(what, ratio, met) for what, ratio, met in upsert.bars(rate)]
    for database, medians in per_row.items():
        for method in DJANGO:
            if method in medians:
                ratio = medians[method] / medians["bulk_update_rows"]
                what = f"bulk_update_rows >= {ROW_BAR:g}x {DJANGO[method]} ({database})"
                verdicts.append((what, ratio, ratio >= ROW_BAR))
    for what, ratio, met in verdicts:
        print(f"bar: {what}: {ratio:.2f}x {'PASS' if met else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
