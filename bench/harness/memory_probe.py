"""Peak RSS growth of one ``bulk_create`` fed by an async generator, in a fresh process.

    python bench/harness/memory_probe.py --rows 1000000 [--url postgresql+asyncpg://...]

Run by ``bench/harness/harness.py`` once per size, each in a process of its own so that one run's
peak cannot hide another's. The process imports everything, connects, and runs an untimed
2,000-row ``bulk_create`` (so statement caches, compiled SQL and the code itself are loaded)
on a fresh table; then it resets the kernel's peak-RSS mark, streams ``--rows`` rows from an
async generator into ``bulk_create``, and reports how far the peak rose above the RSS it had
before the call, as one JSON line.

Why not ``resource.getrusage().ru_maxrss``: on Linux a process started from another inherits
the parent's high-water mark through fork/exec (the harness's ~120 MB here), which hides any
smaller growth, and it cannot be reset after the warm-up. ``/proc/self/status`` ``VmHWM`` is
this process's own peak, and writing ``5`` to ``/proc/self/clear_refs`` resets it to the
current RSS. Where ``/proc`` is missing, ``ru_maxrss`` before/after is the fallback, and the
output says which was used.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: alternatives, common

from alternatives.data import BenchUser, drop_tables, fresh_table, stream_rows
from alternatives.ours import Baserepo

from baserepo import create_engine

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_bench"
WARM_UP_ROWS = 2_000


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
    raise KeyError(key)


def start_peak() -> tuple[str, int]:
    """Reset the peak where the kernel allows it; (method, KiB to measure growth from)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return "VmHWM", _status_kib("VmRSS")
    except OSError:
        # Linux reports ru_maxrss in KiB (macOS in bytes; this harness runs on Linux).
        return "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_kib(method: str) -> int:
    if method == "VmHWM":
        return _status_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def probe(url: str, rows: int) -> dict[str, object]:
    engine = create_engine(url)
    try:
        ours = Baserepo(engine)
        await fresh_table(engine, BenchUser)
        await ours.bulk_create_stream(stream_rows(WARM_UP_ROWS, "warm"))
        await fresh_table(engine, BenchUser)
        gc.collect()
        method, before = start_peak()
        start = time.perf_counter()
        result = await ours.bulk_create_stream(stream_rows(rows, "memory"))
        seconds = time.perf_counter() - start
        after = peak_kib(method)
        # What the answer itself must hold: the list of created ids (one int object each).
        ids_bytes = sys.getsizeof(result.created_ids) + sum(map(sys.getsizeof, result.created_ids))
        await drop_tables(engine)
    finally:
        await engine.dispose()
    return {
        "rows": rows,
        "written": result.success_count,
        "seconds": round(seconds, 3),
        "rss_before_mb": round(before / 1024, 1),
        "peak_rss_mb": round(after / 1024, 1),
        "growth_mb": round((after - before) / 1024, 1),
        "measured_with": method,
        "created_ids_mb": round(ids_bytes / 2**20, 1),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--url", default=DEFAULT_URL, help="an async SQLAlchemy URL")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(probe(args.url, args.rows))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
