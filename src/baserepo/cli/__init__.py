"""The ``baserepo`` command: ``demo``, ``bench`` and ``cache stats|warm|invalidate``.

Argument parsing and dispatch only; each command lives in its own module (``demo``: demo and
bench, ``cache``: the cache commands). Exit statuses: ``_status``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._status import EXIT_CODES_HELP
from .cache import add_cache_command, run_cache
from .demo import add_bench_command, add_demo_command, run_bench, run_demo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baserepo",
        description="baserepo: async repositories with fast bulk operations.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(commands)
    add_bench_command(commands)
    add_cache_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``baserepo`` command; returns the exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return run_bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "cache":
        return run_cache(args)
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
