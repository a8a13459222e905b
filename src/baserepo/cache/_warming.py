"""The background warmer: every interval, one process (elected by a lock in the backend)
replays each model's popular queries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any

from .._model import model_info
from .config import FAILED

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession

    from .config import CacheConfig, WarmReport

__all__ = ["CacheWarmer"]

logger = logging.getLogger("baserepo.cache.warming")


class CacheWarmer:
    """Warm the popular queries of ``models`` every ``warm_interval_seconds``.

    Intervals are numbered from the shared wall clock (``config.wall_clock() // interval``)
    and each model's warm for an interval is claimed with a lock in the backend, so with
    Redis exactly one process of the fleet does it. Use as ``async with CacheWarmer(...):``
    or ``start()``/``stop()``; ``run_once()`` is the single step, for schedulers and tests.

    Args:
        config: the cache configuration the repositories use.
        session_factory: makes a new ``AsyncSession`` (an ``async_sessionmaker``).
        models: the models to warm.
        sleep: awaited between intervals (injected in tests).
    """

    def __init__(
        self,
        config: CacheConfig,
        session_factory: Callable[[], AsyncSession],
        models: Sequence[type[Any]],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._session_factory = session_factory
        self._models = list(models)
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[WarmReport]:
        """Warm every model whose lock for the current interval this process wins."""
        from .._repository import BaseRepository  # the repository imports the cache

        config = self._config
        interval = config.warming_config.warm_interval_seconds
        number = int(config.wall_clock() // interval)
        reports = []
        for model in self._models:
            cache = config.query_cache(model_info(model))
            token = uuid.uuid4().hex
            lock = cache.keys.warm_lock(number)
            claim = functools.partial(config.backend.acquire_lease, lock, token, interval)
            won = await config.call(cache.table, claim)
            if won is FAILED or not won:
                continue
            async with self._session_factory() as session:
                repository: BaseRepository[Any, Any, Any] = BaseRepository(model, session, config)
                reports.append(await repository.warm_cache())
        return reports

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="baserepo-cache-warmer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> CacheWarmer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        interval = self._config.warming_config.warm_interval_seconds
        while True:
            try:
                await self.run_once()
            except Exception:  # a failed warm must not stop the next one
                logger.exception("cache warming failed; retrying next interval")
            elapsed_in_interval = self._config.wall_clock() % interval
            await self._sleep(interval - elapsed_in_interval)
