"""``baserepo demo`` and ``baserepo bench``.

rich is optional (the ``cli`` extra): with it the demo prints tables and progress bars, without
it plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from . import _demo
from .exceptions import BaseRepoError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from rich.console import Console

__all__ = ["main"]

BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bulk_vs_individual.py"
"""Present in a source checkout (``pip install -e``), absent from an installed wheel."""


class RichReporter:
    """The demo's narration as rich rules, tables and progress bars."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def section(self, title: str) -> None:
        self._console.rule(title, style="cyan")

    def say(self, message: str) -> None:
        # Messages quote user data ("[1, 2, 3]", emails): never read them as markup.
        self._console.print(message, markup=False)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(str(cell) for cell in row))
        self._console.print(table)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield lambda done: bar.update(task, completed=done)


def _reporter(plain: bool) -> _demo.Reporter:
    if not plain:
        try:
            from rich.console import Console
        except ImportError:
            pass
        else:
            return RichReporter(Console())
    return _demo.PlainReporter()


def _rows(value: str) -> int:
    rows = int(value)
    if rows < _demo.MIN_ROWS:
        raise argparse.ArgumentTypeError(f"must be at least {_demo.MIN_ROWS}")
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baserepo", description="baserepo: async repositories with fast bulk operations."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="walk through the user guide's bulk operations and query cache on a real database",
        description="Walk through the user guide's bulk operations and query cache on a fresh "
        "demo_users table (dropped and recreated on every run).",
    )
    demo.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="async SQLAlchemy URL, e.g. postgresql+asyncpg://postgres@127.0.0.1/baserepo_demo "
        "or mysql+asyncmy://root@127.0.0.1/baserepo_demo?charset=utf8mb4; the database is "
        "created if missing (default: $BASEREPO_DATABASE_URL, else a SQLite file in the "
        "temporary directory)",
    )
    demo.add_argument(
        "--rows",
        type=_rows,
        default=_demo.DEFAULT_ROWS,
        metavar="N",
        help=f"rows of the long streamed bulk_create (default {_demo.DEFAULT_ROWS:,}); the "
        f"staff table and the individual-vs-bulk comparison use min(N, "
        f"{_demo.POPULATION_LIMIT:,})",
    )
    demo.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis for the query cache step, e.g. redis://127.0.0.1:6379/0; the demo's keys "
        "are deleted at the end (default: $BASEREPO_REDIS_URL, else an in-process cache)",
    )
    demo.add_argument("--plain", action="store_true", help="plain text even if rich is installed")
    commands.add_parser(
        "bench",
        help="run bench/bulk_vs_individual.py (source checkouts only); "
        "options after 'bench' go to the script",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baserepo`` command; returns the exit status."""
    args, rest = _parser().parse_known_args(argv)
    if args.command == "bench":
        return _bench(rest)
    if rest:
        _parser().error(f"unrecognized arguments: {' '.join(rest)}")
    url = args.database_url or _demo.default_database_url()
    redis_url = args.redis_url or _demo.default_redis_url()
    try:
        asyncio.run(
            _demo.main(url, rows=args.rows, reporter=_reporter(args.plain), redis_url=redis_url)
        )
    except KeyboardInterrupt:
        return 130
    except (BaseRepoError, sa_exc.SQLAlchemyError, OSError) as exc:
        print(f"baserepo demo: failed on {_safe_url(url)}: {exc}", file=sys.stderr)
        return 1
    return 0


def _bench(args: Sequence[str]) -> int:
    if not BENCH_SCRIPT.is_file():
        print(
            f"baserepo bench: {BENCH_SCRIPT} not found; the benchmark ships with the source "
            "checkout, not the installed package",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, str(BENCH_SCRIPT), *args])


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy import make_url

        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "<unparsable URL>"


if __name__ == "__main__":
    sys.exit(main())
