"""Where a write's intent is recorded and ended, on every database, with the in-process
backend and with Redis: before the outermost COMMIT and after it, once per model and
commit, never for a SAVEPOINT or a rolled-back transaction; ended (with a bump) when the
COMMIT does not happen after all; and a commit that goes ahead when the intent cannot be
recorded. The crash itself (a writer killed between COMMIT and bump) is
``test_cache_crash.py``; the backends' intent semantics are ``tests/contract``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig
from tests.integration.cache_coherence_support import (
    Stack,
    install_gate,
    person,
    seed,
    selects_on,
)
from tests.models import User

Repo = BaseRepository[Any, Any, Any]
Factory = async_sessionmaker[AsyncSession]
SLOW_MACHINE = 5.0
WATCHED = ("begin_write", "end_write", "bump")


@pytest.fixture(params=["memory", "redis"])
def server(request: pytest.FixtureRequest) -> tuple[str, Redis | None]:
    # Sync, so that it may start the Redis fixture lazily (not allowed in an async fixture).
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_client")
    return "memory", None


@pytest.fixture
async def stack(server: tuple[str, Redis | None]) -> AsyncIterator[Stack]:
    opened = Stack(*server)
    try:
        yield opened
    finally:
        await opened.close()


class Recorder:
    """The config's real backend, noting the intent calls and bumps in ``log``; ``failing``
    names the methods that raise instead (a Redis that went away), ``landed`` those that
    raise after the call went through (a reply that timed out)."""

    def __init__(
        self,
        inner: Any,
        log: list[str],
        failing: tuple[str, ...] = (),
        landed: tuple[str, ...] = (),
    ) -> None:
        self._inner = inner
        self._log = log
        self._failing = failing
        self._landed = landed

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in WATCHED:
            return method

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            if name in self._failing:
                self._log.append(f"{name} failed")
                raise ConnectionError("the cache backend went away")
            self._log.append(name)
            result = await method(*args, **kwargs)
            if name in self._landed:
                raise TimeoutError("the reply was too late")
            return result

        return recorded


@contextmanager
def commits_on(engine: AsyncEngine, log: list[str]) -> Iterator[None]:
    """Note every COMMIT the engine sends (not SAVEPOINT releases) in ``log``."""

    def committed(_conn: Any) -> None:
        log.append("COMMIT")

    event.listen(engine.sync_engine, "commit", committed)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "commit", committed)


def writes_only(log: list[str]) -> list[str]:
    """``log`` without the COMMITs of transactions that only read (the repository's reads
    commit too): a COMMIT is kept when an intent call came just before it."""
    return [
        entry
        for i, entry in enumerate(log)
        if entry != "COMMIT" or (i > 0 and log[i - 1].startswith("begin_write"))
    ]


def recorded(
    stack: Stack, log: list[str], failing: tuple[str, ...] = (), landed: tuple[str, ...] = ()
) -> CacheConfig:
    config = stack.config(operation_timeout=SLOW_MACHINE)
    config.backend = Recorder(config.backend, log, failing, landed)
    return config


async def _caller_transaction(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    async with factory() as session, session.begin():
        repo: Repo = BaseRepository(User, session, config)
        await repo.update(ids[0], {"salary": 1})  # in a SAVEPOINT of the caller's transaction
        await repo.bulk_update({"department": "eng"}, {"salary": 2}, batch_size=3)
        async with session.begin_nested():
            await repo.create(person(100))


async def _orm_commit(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    async with factory() as session:
        repo: Repo = BaseRepository(User, session, config)
        user = await session.get(User, ids[1])
        assert user is not None
        await session.commit()
        user.salary = 3
        session.add(User(**person(101)))
        await session.commit()  # flushes inside the commit: the intent still comes first
        assert repo is not None


async def _repository_write(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    async with factory() as session:
        await BaseRepository(User, session, config).update(ids[1], {"salary": 4})


async def _bulk_write(factory: Factory, config: CacheConfig, ids: list[int]) -> None:
    async with factory() as session:
        # 8 "eng" users in batches of 3: three commits, each with its intent.
        await BaseRepository(User, session, config).bulk_update(
            {"department": "eng"}, {"salary": 5}, batch_size=3
        )


ONE_WRITE = ["begin_write", "COMMIT", "end_write"]
WRITES: dict[
    str, tuple[Callable[[Factory, CacheConfig, list[int]], Awaitable[None]], list[str]]
] = {
    "repository_write": (_repository_write, ONE_WRITE),
    "bulk_batches": (_bulk_write, ONE_WRITE * 3),
    "orm_commit": (_orm_commit, ONE_WRITE),
    "callers_transaction_with_savepoints": (_caller_transaction, ONE_WRITE),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_the_intent_is_recorded_before_the_outermost_commit_and_ended_after(
    engine: AsyncEngine, session_factory: Factory, stack: Stack, write: str
) -> None:
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log)
    run, expected = WRITES[write]
    with commits_on(engine, log):
        await run(session_factory, config, ids)
    assert writes_only(log) == expected


async def test_a_rolled_back_write_records_no_intent(
    engine: AsyncEngine, session_factory: Factory, stack: Stack
) -> None:
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log)
    with commits_on(engine, log):
        async with session_factory() as session:
            repo: Repo = BaseRepository(User, session, config)
            async with session.begin():
                async with session.begin_nested():
                    await repo.update(ids[1], {"salary": 9})
                await session.rollback()
            user = await session.get(User, ids[2])
            assert user is not None
            user.salary = 9
            await session.flush()
            await session.rollback()
    assert log == []


async def test_a_commit_that_fails_after_the_intent_ends_it_at_once(
    engine: AsyncEngine, session_factory: Factory, stack: Stack
) -> None:
    # The intent is recorded, then the COMMIT does not happen (a later before_commit hook
    # fails here; a refused or lost COMMIT is alike): the intent is ended with a bump when
    # the transaction ends, so the cache serves again at once, not after the intent's time.
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log)
    config.write_intent_seconds = 60.0

    def refuse(_session: Any) -> None:
        raise RuntimeError("refused before COMMIT")

    with commits_on(engine, log):
        async with session_factory() as session:
            repo: Repo = BaseRepository(User, session, config)
            user = await repo.get(ids[1])
            assert user is not None
            await session.commit()
            log.clear()  # the read's generation, its transaction's COMMIT
            user.salary = 9
            await session.flush()  # queues the invalidation (and installs our listener)
            event.listen(session.sync_session, "before_commit", refuse)
            with pytest.raises(RuntimeError, match="refused"):
                await session.commit()
            await session.rollback()
    assert log == ["begin_write", "end_write"]
    await _assert_cached_again(session_factory, config, engine, ids[1], person(1)["salary"])


async def test_a_callers_commit_cancelled_while_recording_the_intent_does_not_commit(
    engine: AsyncEngine, session_factory: Factory, stack: Stack
) -> None:
    # Cancelled before COMMIT was sent: the commit is abandoned (the caller's own commit is
    # not shielded), the cancellation reaches the caller, the intent is ended, and the
    # session goes on working.
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log)
    config.write_intent_seconds = 60.0
    gate = install_gate(config, "begin_write")
    with commits_on(engine, log):
        async with session_factory() as session:
            repo: Repo = BaseRepository(User, session, config)
            user = await repo.get(ids[1])
            assert user is not None
            await session.commit()
            log.clear()  # the read's generation, its transaction's COMMIT
            user.salary = 9
            gate.arm()
            task = asyncio.ensure_future(session.commit())
            await gate.wait_reached()
            task.cancel()
            await asyncio.sleep(0.05)
            assert not task.done()
            gate.open()
            with pytest.raises(asyncio.CancelledError):
                await task
            await session.rollback()
            assert await BaseRepository(User, session).count() == 12
    assert log == ["begin_write", "end_write"]
    await _assert_cached_again(session_factory, config, engine, ids[1], person(1)["salary"])


async def test_a_write_goes_ahead_when_the_intent_cannot_be_recorded(
    engine: AsyncEngine, session_factory: Factory, stack: Stack
) -> None:
    # The cache never fails a repository call: the commit proceeds, and this process stops
    # trusting the model until a bump lands.
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log, failing=("begin_write",))
    with commits_on(engine, log):
        async with session_factory() as session:
            assert await BaseRepository(User, session, config).update(ids[1], {"salary": 9})
    # The end still runs: a begin that timed out may have landed, and its intent must go.
    assert writes_only(log) == ["begin_write failed", "COMMIT", "end_write"]
    assert config.stats().untrusted_models == ()  # the bump landed: trusted again
    await _assert_cached_again(session_factory, config, engine, ids[1], 9)


async def test_an_intent_whose_reply_was_lost_is_still_ended_after_the_commit(
    engine: AsyncEngine, session_factory: Factory, stack: Stack
) -> None:
    # begin_write reached the backend but its caller gave up (a timeout): the intent stands
    # there, so the end after the COMMIT removes it, and the cache serves again at once
    # rather than after write_intent_seconds.
    ids = await seed(session_factory)
    log: list[str] = []
    config = recorded(stack, log, landed=("begin_write",))
    config.write_intent_seconds = 60.0
    with commits_on(engine, log):
        async with session_factory() as session:
            assert await BaseRepository(User, session, config).update(ids[1], {"salary": 9})
    assert writes_only(log) == ["begin_write", "COMMIT", "end_write"]
    await _assert_cached_again(session_factory, config, engine, ids[1], 9)


async def _assert_cached_again(
    factory: Factory, config: CacheConfig, engine: AsyncEngine, user_id: int, salary: int
) -> None:
    """A read fills the cache at once (no intent left standing) and the next one hits."""
    for _ in range(2):
        async with factory() as session:
            user = await BaseRepository(User, session, config).get(user_id)
            assert user is not None
            assert user.salary == salary
        await config.settle()
    with selects_on(engine) as log:
        async with factory() as session:
            user = await BaseRepository(User, session, config).get(user_id)
    assert user is not None
    assert user.salary == salary
    assert log.count == 0, "not served from the cache"
