"""The user guide's bulk operations and query cache (docs/guide.md), run on a real database:
the same tour as ``baserepo demo``.

    python examples/bulk_operations_demo.py                       # SQLite file in the temp dir
    python examples/bulk_operations_demo.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_demo
    python examples/bulk_operations_demo.py --database-url "mysql+asyncmy://root@127.0.0.1:3306/baserepo_demo?charset=utf8mb4"

Options: ``--database-url URL`` (default ``$BASEREPO_DATABASE_URL``, else SQLite), ``--rows N``
(rows of the long streamed step, default 20,000), ``--redis-url URL`` (the cache step's Redis,
default ``$BASEREPO_REDIS_URL``, else an in-process cache), ``--plain`` (no rich output). The
walkthrough itself, step by step as in the user guide, is the ``baserepo.demo`` package.
"""

import sys

from baserepo.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
