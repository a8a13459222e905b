"""A writer that dies between its commit and its cache bump: run as a child process by
``test_cache_crash.py`` (``python -m tests.integration.crash_writer '<json>'``).

It opens its own engine and cache client (another process of the application), installs an
``after_commit`` session listener that SIGKILLs the process (it runs after COMMIT and before
the library's after-commit work, so the bump never happens), and makes one write. Exits 3 if
it survived the write (the kill point was never reached).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from typing import Any

from redis.asyncio import Redis, RedisCluster
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, CacheConfig, create_engine
from tests.models import User

SURVIVED = 3
_UPDATE = re.compile(r"\bUPDATE\s+\S+\s+SET\b", re.IGNORECASE)
"""An UPDATE statement, also inside a CTE (the bulk engine's batches), not SELECT ... FOR UPDATE."""


class _KillAfterWriteCommits:
    """Kills the process at the first commit after an UPDATE was sent (reads the repository
    makes first, in transactions of their own, commit too)."""

    def __init__(self) -> None:
        self.updated = False

    def saw(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _UPDATE.search(statement):
            self.updated = True

    def committed(self, _session: Any) -> None:
        if self.updated:
            os.kill(os.getpid(), signal.SIGKILL)


async def main(spec: dict[str, Any]) -> None:
    engine = create_engine(spec["db_url"])
    client: Redis | RedisCluster
    if spec["cluster"]:
        host, port = spec["redis"]
        client = RedisCluster(host=host, port=port)
    else:
        host, port = spec["redis"]
        client = Redis(host=host, port=port)
    config = CacheConfig(
        redis_client=client,
        key_prefix=spec["prefix"],
        write_intent_seconds=spec["write_intent_seconds"],
        operation_timeout=spec["operation_timeout"],
    )
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo: BaseRepository[Any, Any, Any] = BaseRepository(User, session, config)
        target = spec["id"]
        if spec["write"] == "orm":
            # Loaded before the listener: a read's own commit must not trip it.
            user = await session.get(User, target)
            assert user is not None
            await session.commit()
        killer = _KillAfterWriteCommits()
        event.listen(engine.sync_engine, "after_cursor_execute", killer.saw)
        event.listen(session.sync_session, "after_commit", killer.committed)
        if spec["write"] == "bulk_update":
            await repo.bulk_update({"department": "eng"}, {"salary": 7})
        elif spec["write"] == "update":
            await repo.update(target, {"salary": 7})
        else:
            user.salary = 7
            await session.commit()
    sys.exit(SURVIVED)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
