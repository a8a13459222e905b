"""Redis Sentinel: a master, a replica and three sentinels (``redis_sentinel``), the cache on
``Sentinel(...).master_for(...)``, and failovers by killing the master (SIGKILL).

The bar (issue 11): after a failover, 0 reads served a value older than a write that had
returned before the read began, whichever process reads, and 0 failed repository calls; and
no generation is handed out twice. Application processes are separate OS processes
(``sentinel_workers``, spawned), on the PostgreSQL test database.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker

from baserepo import BaseRepository, CacheConfig
from tests.integration import sentinel_workers as workers
from tests.integration.cache_coherence_support import Factory, seed
from tests.models import User
from tests.redis_sentinel import SentinelSet

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

# What docs/deployment.md recommends for Sentinel: bump_retry_seconds above the failover
# time; every other setting at its default (the breakers reset after 5 s, during the load).
OPTIONS: dict[str, Any] = {"bump_retry_seconds": 10.0}
SPAWN = multiprocessing.get_context("spawn")


class Setup:
    def __init__(self, sentinel: SentinelSet, db_url: str) -> None:
        self.sentinel = sentinel
        self.db_url = db_url
        self.prefix = f"brsen-{uuid.uuid4().hex[:12]}"
        self.configs: list[CacheConfig] = []

    def config(self, **options: Any) -> CacheConfig:
        config = workers.cache_config(self.sentinel.addresses, self.prefix, **options)
        self.configs.append(config)
        return config

    async def generation(self, port: int) -> int:
        async with Redis(host="127.0.0.1", port=port) as raw:
            value = await raw.get(f"{self.prefix}:v1:{{users}}:~gen")
            return 0 if value is None else int(value)

    async def close(self) -> None:
        for config in self.configs:
            await workers.close(config)


@pytest.fixture
async def setup(redis_sentinel: SentinelSet, db_url: str) -> AsyncIterator[Setup]:
    opened = Setup(redis_sentinel, db_url)
    try:
        yield opened
    finally:
        await opened.close()


async def salary(factory: Factory, config: CacheConfig, row: int) -> int | None:
    async with factory() as session:
        user = await BaseRepository(User, session, config).get(row)
    await config.settle()
    return None if user is None else user.salary


async def set_salary(factory: Factory, config: CacheConfig, row: int, value: int) -> None:
    async with factory() as session:
        assert await BaseRepository(User, session, config).update(row, {"salary": value})


async def test_a_bump_the_old_master_acknowledged_and_lost_serves_nothing_stale(
    setup: Setup, session_factory: Factory
) -> None:
    """The issue's failover, made deterministic: the replica stops receiving (SIGSTOP and its
    link dropped), the writer's bump is acknowledged by the master alone, the master dies and
    the replica is promoted without that bump. No process may be served the value from
    before the write: the writer, a process started after the failover, and a bystander (a
    separate OS process) that cached the old value and never read the lost generation, whose
    identity check is not due (a failover faster than it)."""
    row = (await seed(session_factory, 2))[0]
    writer = setup.config(**OPTIONS)
    await set_salary(session_factory, writer, row, 1)

    orders, replies = SPAWN.Queue(), SPAWN.Queue()
    bystander = SPAWN.Process(
        target=workers.bystander,
        args=(setup.db_url, setup.sentinel.addresses, setup.prefix, row,
              {**OPTIONS, "identity_check_seconds": 3600.0}, orders, replies),
    )  # fmt: skip
    bystander.start()
    try:
        orders.put("3")
        primed, hits = await asyncio.to_thread(replies.get, timeout=60)
        assert primed == [1, 1, 1]
        assert hits >= 2, "the bystander should serve the old value from its cache"

        setup.sentinel.cut_replication()
        await set_salary(session_factory, writer, row, 2)
        lost = await setup.generation(setup.sentinel.master.port)
        setup.sentinel.master.kill()
        setup.sentinel.replica.resume()
        failover_seconds = await setup.sentinel.promoted()
        promoted = setup.sentinel.replica.port
        assert await setup.generation(promoted) < lost, "the bump should have been lost"

        orders.put("4")
        after, _ = await asyncio.to_thread(replies.get, timeout=60)
        by_writer = [await salary(session_factory, writer, row) for _ in range(4)]
        newcomer = setup.config(**OPTIONS)
        by_newcomer = [await salary(session_factory, newcomer, row) for _ in range(4)]
        assert {"bystander": after, "writer": by_writer, "newcomer": by_newcomer} == {
            "bystander": [2] * 4,
            "writer": [2] * 4,
            "newcomer": [2] * 4,
        }, f"stale reads after a {failover_seconds:.1f}s failover"

        await set_salary(session_factory, writer, row, 3)
        assert await setup.generation(promoted) > lost, "a lost generation was reused"
        assert await salary(session_factory, newcomer, row) == 3
    finally:
        orders.put("stop")
        bystander.join(timeout=30)
        if bystander.is_alive():
            bystander.kill()


PROCESSES = 4
ROWS_PER_PROCESS = 2
LOAD_BEFORE_KILL_SECONDS = 1.5
LOAD_AFTER_PROMOTION_SECONDS = 6.0


async def test_a_failover_under_load_of_several_processes_serves_nothing_stale(
    setup: Setup, session_factory: async_sessionmaker[Any], tmp_path: Path
) -> None:
    """Several processes read and write the same rows; the master is killed mid-load and the
    load goes on through the promotion and past the circuit breakers' reset. Every read is
    checked against the writes that had returned before it began."""
    rows = await seed(session_factory, PROCESSES * ROWS_PER_PROCESS)
    async with session_factory() as session:
        await BaseRepository(User, session).bulk_update({"id__in": rows}, {"salary": 0})
    stop = SPAWN.Event()
    ready = [SPAWN.Event() for _ in range(PROCESSES)]
    outs = [tmp_path / f"load-{index}.json" for index in range(PROCESSES)]
    processes = [
        SPAWN.Process(
            target=workers.load,
            args=(
                setup.db_url,
                setup.sentinel.addresses,
                setup.prefix,
                rows[index::PROCESSES],
                rows,
                OPTIONS,
                ready[index],
                stop,
                str(outs[index]),
                index,
            ),
        )
        for index in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        for event in ready:
            assert await asyncio.to_thread(event.wait, 60), "a load process did not start"
        await asyncio.sleep(LOAD_BEFORE_KILL_SECONDS)
        killed_at = time.monotonic()
        setup.sentinel.master.kill()
        failover_seconds = await setup.sentinel.promoted()
        await asyncio.sleep(LOAD_AFTER_PROMOTION_SECONDS)
    finally:
        stop.set()
        for process in processes:
            await asyncio.to_thread(process.join, 60)
            if process.is_alive():
                process.kill()

    results = [json.loads(out.read_text()) for out in outs]
    records = [record for result in results for record in result["records"]]
    errors = [error for result in results for error in result["errors"]]
    stale = stale_reads(records)
    reads = sum(1 for record in records if record[0] == "r")
    after_kill = [r for r in stale if r[3] >= killed_at]
    summary = (
        f"failover {failover_seconds:.2f}s; {reads} reads, "
        f"{sum(1 for r in records if r[0] == 'w')} writes; {len(stale)} stale "
        f"({len(after_kill)} after the kill); {len(errors)} failed calls; "
        f"stats {[result['stats'] for result in results]}"
    )
    print(summary)
    unbumped = sorted(round(r[4] - killed_at, 2) for r in records if r[0] == "W")
    print("writes whose bump failed, seconds after the kill:", unbumped)
    assert (stale[:10], errors[:10]) == ([], []), summary
    assert reads > 100, summary


def stale_reads(records: list[list[Any]]) -> list[list[Any]]:
    """Reads whose value is below the latest write of that row that returned before the read
    began (each row has one writing process, so its values only go up)."""
    writes: dict[int, list[tuple[float, int]]] = {}
    for kind, row, value, _started, returned in records:
        if kind in "wW":
            writes.setdefault(row, []).append((returned, value))
    stale = []
    for record in records:
        kind, row, value, started, _returned = record
        if kind != "r":
            continue
        owed = max((v for returned, v in writes.get(row, []) if returned < started), default=0)
        if value is None or value < owed:
            stale.append(record)
    return stale


async def test_wait_replicas_counts_a_bump_no_replica_acknowledged_as_failed(
    setup: Setup, session_factory: Factory
) -> None:
    """``wait_replicas=1``: a bump is an invalidation once a replica has it. With the replica
    paused, the write still returns (no error), the bump counts as failed and the writer
    stops trusting the model; once the replica is back, the next read's bump restores it."""
    row = (await seed(session_factory, 2))[0]
    # The paused write fails three backend calls (its intent, its end, the read's bump): a
    # breaker tripped by them would keep the read after the resume from bumping.
    writer = setup.config(wait_replicas=1, wait_timeout=0.1, breaker_threshold=10)
    await set_salary(session_factory, writer, row, 1)
    sentinel = setup.sentinel
    replicated = await setup.generation(sentinel.replica.port)
    assert replicated == await setup.generation(sentinel.master.port) > 0
    assert writer.stats().invalidation_failures == 0

    sentinel.replica.pause()
    try:
        await set_salary(session_factory, writer, row, 2)
        stats = writer.stats()
        assert (stats.invalidation_failures, stats.untrusted_models) == (1, ("users",))
        assert await salary(session_factory, writer, row) == 2
    finally:
        sentinel.replica.resume()
    assert await salary(session_factory, writer, row) == 2
    assert writer.stats().untrusted_models == ()
    assert await setup.generation(sentinel.replica.port) > replicated
