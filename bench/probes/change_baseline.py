"""bulk_update / bulk_delete of this checkout against another copy of baserepo (a baseline),
both against the single Core statement with ``RETURNING id``, in one process: the same rows,
the same table loads (ANALYZEd and checkpointed before each timed call), methods rotated on
every repetition, median of ``--repeat``. On a shared machine this is the fair before/after:
load that comes and goes hits both versions alike.

    git archive <commit> | tar -x -C /tmp/baseline      # the version to compare with
    .venv/bin/python bench/probes/change_baseline.py --baseline /tmp/baseline/src/baserepo
    .venv/bin/python bench/probes/change_baseline.py --baseline ... --tables 500000 --batches 50000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import COLUMNS, SALARY_CUTOFF, as_tuple, fresh_table, generate_rows
from alternatives.data import BenchStaff as Staff
from change_batch_size import CHANGES, RAW_URL, URL, Timed, core, ours

import baserepo
from baserepo.testing import ensure_database

if TYPE_CHECKING:
    from types import ModuleType

    from sqlalchemy.ext.asyncio import AsyncEngine


def load_baseline(path: Path) -> ModuleType:
    """The package at ``path`` imported as ``baserepo_baseline`` (its imports are relative)."""
    spec = importlib.util.spec_from_file_location(
        "baserepo_baseline", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"no package at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def measure(
    engine: AsyncEngine,
    raw: asyncpg.Connection,
    rows: int,
    methods: dict[str, Timed],
    repeat: int,
    change: str,
    records: list[tuple[Any, ...]],
) -> None:
    touched = sum(1 for r in records if r[COLUMNS.index("salary")] < SALARY_CUTOFF)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for repetition in range(repeat + 1):  # the first round only warms up
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            await fresh_table(engine, Staff)
            await raw.copy_records_to_table(Staff.__tablename__, records=records, columns=COLUMNS)
            await raw.execute(f"ANALYZE {Staff.__tablename__}")
            await raw.execute("CHECKPOINT")
            gc.collect()
            started = time.perf_counter()
            changed = await methods[name]()
            if changed != touched:
                raise RuntimeError(f"{change} {name}: {changed} rows, expected {touched}")
            if repetition:
                seconds[name].append(time.perf_counter() - started)
    base = statistics.median(seconds["core"])
    ratios = "  ".join(
        f"{name} {base / statistics.median(seconds[name]):.2f}" for name in names[1:]
    )
    print(f"{rows:>9,} rows, {change:<11}: core {base * 1000:7.1f} ms; {ratios}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a baserepo package dir")
    parser.add_argument("--tables", default="100000", help="table sizes, comma list")
    parser.add_argument("--batches", default="50000", help="batch sizes, comma list")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    baseline = load_baseline(args.baseline.resolve())
    await ensure_database(URL)
    engine = baserepo.create_engine(URL)
    raw = await asyncpg.connect(RAW_URL)
    try:
        print("rows/s relative to one Core statement (median); base = --baseline, this = here")
        for rows in map(int, args.tables.split(",")):
            records = [as_tuple(r) for r in generate_rows(rows, "change")]
            for change in CHANGES:
                methods: dict[str, Timed] = {"core": core(engine, change)}
                for size in map(int, args.batches.split(",")):
                    methods[f"base {size:,}"] = ours(engine, change, size, baseline)
                    methods[f"this {size:,}"] = ours(engine, change, size, baserepo)
                await measure(engine, raw, rows, methods, args.repeat, change, records)
    finally:
        await raw.close()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
