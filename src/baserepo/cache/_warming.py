"""Warming: replay a model's popular queries so their entries are current before they are
asked for, by hand (``repo.warm_cache()``) or in the background (``CacheWarmer``).

Invariant: a replay is an ordinary read through the repository (its own short session, so
only committed data is stored; the same guarded fill path), not counted as a use. Per
interval of the shared wall clock, one process of the fleet warms each model: the interval is
claimed with a lease in the backend.

The cache does not import the repository: ``baserepo._repository`` hands this module the one
function that runs a query for a model (``replay_queries_with``) when it is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .._model import model_info
from ._guard import FAILED
from ._query_cache import query_cache_for
from ._stats import WarmReport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from sqlalchemy.ext.asyncio import AsyncSession

    from ._query_cache import QueryCache
    from ._usage import QueryUsage
    from .config import CacheConfig

    Replay = Callable[[str, dict[str, Any]], Awaitable[object]]
    """Runs query ``operation`` with ``spec`` (keyword arguments) through the cache."""
    RepositoryReplay = Callable[
        [type[Any], AsyncSession, CacheConfig, str, dict[str, Any]], Awaitable[object]
    ]
    """As ``Replay``, for a model, in a session, under a config."""

__all__ = [
    "CacheWarmer",
    "WarmObserver",
    "WarmOutcome",
    "replay_queries_with",
    "warm",
    "warm_model",
]

WarmOutcome = Literal["warmed", "already_cached", "failed"]

logger = logging.getLogger("baserepo.cache.warming")

_replay_query: RepositoryReplay | None = None


def replay_queries_with(replay: RepositoryReplay) -> None:
    """Set how ``CacheWarmer`` runs query ``operation`` with ``spec`` for a model in a session
    (called once, by ``baserepo._repository``)."""
    global _replay_query
    _replay_query = replay


class WarmObserver(Protocol):
    """Told what a warm does, query by query (``baserepo cache warm`` draws its progress bar
    from it)."""

    def started(self, queries: Sequence[QueryUsage]) -> None:
        """The popular queries about to be replayed, in order."""

    def replayed(self, usage: QueryUsage, outcome: WarmOutcome, error: str | None) -> None:
        """One query done: ``outcome`` is ``"warmed"``, ``"already_cached"`` or ``"failed"``;
        ``error`` says why it failed (None otherwise)."""


async def warm(
    cache: QueryCache, replay: Replay, observer: WarmObserver | None = None
) -> WarmReport:
    """Replay ``cache``'s popular queries with ``replay(operation, spec)`` and report."""
    config, runtime = cache.config, cache.runtime
    started, started_at = config.clock(), config.wall_clock()
    await cache.sync_usage()
    popular = config.get_popular_queries(model=cache.table)
    if observer is not None:
        observer.started(popular)
    outcomes: dict[WarmOutcome, int] = {"warmed": 0, "already_cached": 0, "failed": 0}
    with runtime.usage.not_counted():
        for usage in popular:
            outcome, error = await _replay_one(cache, replay, usage)
            outcomes[outcome] += 1
            if observer is not None:
                observer.replayed(usage, outcome, error)
    warmed, already, failed = outcomes["warmed"], outcomes["already_cached"], outcomes["failed"]
    warming = config.warming_config
    await runtime.usage.decay(
        cache.table,
        cache.keys,
        config.backend,
        warming.decay_factor,
        warming.max_tracked_queries,
    )
    report = WarmReport(
        cache.table,
        warmed,
        already,
        failed,
        started_at,
        config.clock() - started,
        tuple(popular),
    )
    runtime.mark_warmed(report)
    return report


async def _replay_one(
    cache: QueryCache, replay: Replay, usage: QueryUsage
) -> tuple[WarmOutcome, str | None]:
    spec = _replayable(usage)
    if spec is None:
        return "failed", "the query's arguments could not be stored"
    counters = cache.counters
    fills, hits = counters.fills, counters.hits
    try:
        await replay(usage.operation, spec)
        await cache.settle()
    except Exception as error:
        logger.exception("could not replay popular query %s", usage.digest)
        # One line: database errors carry a statement and a link on the next ones.
        message = (str(error).strip().splitlines() or [""])[0]
        return "failed", f"{type(error).__name__}: {message}"
    if counters.fills > fills:
        return "warmed", None
    if counters.hits > hits:
        return "already_cached", None
    # Read through without storing: a write intent stood, the model is not cacheable, the
    # backend failed (counted in backend_errors)...
    return "failed", "the result was not stored"


async def warm_model(
    config: CacheConfig,
    session_factory: Callable[[], AsyncSession],
    model: type[Any],
    observer: WarmObserver | None = None,
) -> WarmReport:
    """``repo.warm_cache()`` without a repository: replay ``model``'s popular queries (from
    the backend's fleet-wide ranking), each in a new session of ``session_factory``, now,
    without claiming a warm interval (``CacheWarmer`` does that). Scores are aged by
    ``decay_factor`` afterwards, as at every warm.
    """
    cache = query_cache_for(config, model_info(model))
    warmer = CacheWarmer(config, session_factory, [model])
    return await warm(cache, functools.partial(warmer._replay, model), observer)


def _replayable(usage: QueryUsage) -> dict[str, Any] | None:
    if usage.spec is None:
        return None
    spec = dict(usage.spec)
    spec.pop("operation", None)
    return spec


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
        config = self._config
        interval = config.warming_config.warm_interval_seconds
        number = int(config.wall_clock() // interval)
        reports = []
        for model in self._models:
            cache = query_cache_for(config, model_info(model))
            lock = cache.keys.warm_lock(number)
            claim = functools.partial(
                config.backend.acquire_lease, lock, uuid.uuid4().hex, interval
            )
            won = await config.runtime.guard.call(cache.table, claim)
            if won is FAILED or not won:
                continue
            reports.append(await warm(cache, functools.partial(self._replay, model)))
        return reports

    async def _replay(self, model: type[Any], operation: str, spec: dict[str, Any]) -> None:
        if _replay_query is None:
            raise RuntimeError("import baserepo before warming: it supplies the replay")
        # Each query in a session of its own: only committed data is stored.
        async with self._session_factory() as session:
            await _replay_query(model, session, self._config, operation, spec)

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
