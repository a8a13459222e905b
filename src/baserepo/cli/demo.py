"""``baserepo demo`` and ``baserepo bench``: their arguments and how they run.

The demo is the :mod:`baserepo.demo` package; rich is optional (the ``cli`` extra): with it the
demo prints tables and progress bars, without it plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc

from .. import demo
from ..exceptions import BaseRepoError
from ._status import FAILED, INTERRUPTED, OK, USAGE

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["add_bench_command", "add_demo_command", "run_bench", "run_demo"]

BENCH_SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "scenarios" / "bulk_vs_individual.py"
"""Present in a source checkout (``pip install -e``), absent from an installed wheel."""


def _rows(value: str) -> int:
    rows = int(value)
    if rows < demo.MIN_ROWS:
        raise argparse.ArgumentTypeError(f"must be at least {demo.MIN_ROWS}")
    return rows


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo_command = commands.add_parser(
        "demo",
        help="walk through the user guide's (docs/guide.md) bulk operations and query cache "
        "on a real database",
        description="Walk through the user guide's bulk operations and query cache on a fresh "
        "demo_users table (dropped and recreated on every run).",
    )
    demo_command.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="async SQLAlchemy URL, e.g. postgresql+asyncpg://postgres@127.0.0.1/baserepo_demo "
        "or mysql+asyncmy://root@127.0.0.1/baserepo_demo?charset=utf8mb4; the database is "
        "created if missing (default: $BASEREPO_DATABASE_URL, else a SQLite file in the "
        "temporary directory)",
    )
    demo_command.add_argument(
        "--rows",
        type=_rows,
        default=demo.DEFAULT_ROWS,
        metavar="N",
        help=f"rows of the long streamed bulk_create (default {demo.DEFAULT_ROWS:,}); the "
        f"staff table and the individual-vs-bulk comparison use min(N, "
        f"{demo.POPULATION_LIMIT:,})",
    )
    demo_command.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis for the query cache step, e.g. redis://127.0.0.1:6379/0; the demo's keys "
        "are deleted at the end (default: $BASEREPO_REDIS_URL, else an in-process cache)",
    )
    demo_command.add_argument(
        "--plain", action="store_true", help="plain text even if rich is installed"
    )


def add_bench_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser(
        "bench",
        help="run bench/scenarios/bulk_vs_individual.py (source checkouts only); "
        "options after 'bench' go to the script",
        add_help=False,
    )


def run_demo(args: argparse.Namespace) -> int:
    url = args.database_url or demo.default_database_url()
    redis_url = args.redis_url or demo.default_redis_url()
    try:
        asyncio.run(
            demo.main(
                url, rows=args.rows, reporter=demo.make_reporter(args.plain), redis_url=redis_url
            )
        )
    except KeyboardInterrupt:
        return INTERRUPTED
    except (BaseRepoError, sa_exc.SQLAlchemyError, OSError) as exc:
        print(f"baserepo demo: failed on {demo.redact(url)}: {exc}", file=sys.stderr)
        return FAILED
    return OK


def run_bench(args: Sequence[str]) -> int:
    if not BENCH_SCRIPT.is_file():
        print(
            f"baserepo bench: {BENCH_SCRIPT} not found; the benchmark ships with the source "
            "checkout, not the installed package",
            file=sys.stderr,
        )
        return USAGE
    return subprocess.call([sys.executable, str(BENCH_SCRIPT), *args])
