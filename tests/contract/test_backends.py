"""The CacheBackend contract: every test that takes ``backend`` or ``target`` runs once per
backend (memory, redis, cluster) and expects the same answers, MemoryBackend's being the spec.

The tests after the contract cover what only the Redis backend has: script reloading, clients
that decode responses, the client types it accepts, and the ``spare_redis`` fixture.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from baserepo.cache._memory import MemoryBackend
from baserepo.cache._protocol import CacheBackend
from baserepo.cache._redis import RedisBackend
from baserepo.cache._scripts import SCRIPTS
from tests.contract.conftest import (
    REDIS_URL,
    RedisServer,
    Target,
    start_cluster,
    wait_for_cluster,
)

LONG_TTL = 60.0
A_MICROSECOND_CLOCK_IN_2001 = 10**15
"""Generations start from the clock in microseconds: any first generation is above this."""


def gen(target: Target, model: str = "users") -> str:
    return target.key(model, "~gen")


async def gather_in_batches(calls: list[Awaitable[object]], size: int = 50) -> None:
    # Bounded, so a cluster client does not open hundreds of connections per node.
    for start in range(0, len(calls), size):
        await asyncio.gather(*calls[start : start + size])


# -- entries and generations ---------------------------------------------------------------


async def test_is_a_cache_backend(backend: CacheBackend) -> None:
    assert isinstance(backend, CacheBackend)


async def test_read_of_a_missing_entry_is_generation_zero_and_none(target: Target) -> None:
    b, key = target.backend, target.key("users", "get:1")
    assert await b.read(gen(target), key) == (0, None)
    assert await b.read_many(gen(target), [key, target.key("users", "get:2")]) == (0, [None, None])
    assert await b.read_many(gen(target), []) == (0, [])


async def test_fill_at_the_current_generation_is_read_back(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    current = await b.bump(gen(target))
    assert await b.fill(gen(target), key, current, b"rows", LONG_TTL) is True
    assert await b.read(gen(target), key) == (current, b"rows")
    assert await b.fill(gen(target), key, current, b"newer rows", LONG_TTL) is True
    assert await b.read(gen(target), key) == (current, b"newer rows")


async def test_a_fill_needs_an_existing_generation(target: Target) -> None:
    # A missing generation reads as 0 but is not generation 0: generations are created only
    # by bump() (from the clock), so a reader that read 0, or any number from before the
    # backend lost its data, stores nothing. Neither fill writes a key, and fill_and_release
    # still frees the caller's lease.
    b = target.backend
    key, other, lease = (target.key("users", n) for n in ("list:a", "list:b", "~lease:a"))
    assert await b.read(gen(target), key) == (0, None)
    assert await b.fill(gen(target), key, 0, b"rows", LONG_TTL) is False
    assert await b.fill(gen(target), key, 1, b"rows", LONG_TTL) is False
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    refused = await b.fill_and_release(gen(target), other, 0, b"rows", LONG_TTL, lease, "mine")
    assert refused is False
    assert await b.read_many(gen(target), [key, other]) == (0, [None, None])
    assert await b.read_with_lease(gen(target), other, lease) == (0, None, False)
    # Nothing was written at all, not even the generation: no key to delete, none left over.
    assert await b.delete_pattern(target.key("users", "*")) == 0
    if target.client is not None:
        assert await target.raw_keys() == set()
    # Once bump() has created the generation, a fill at it is stored.
    current = await b.bump(gen(target))
    assert current > A_MICROSECOND_CLOCK_IN_2001
    assert await b.fill(gen(target), key, current, b"rows", LONG_TTL) is True
    assert await b.read(gen(target), key) == (current, b"rows")


async def test_payloads_round_trip_byte_for_byte(target: Target) -> None:
    # The stored form is b"<generation>:<payload>": colons and digits inside the payload, an
    # empty payload and bytes that are not UTF-8 must all come back unchanged, by either fill.
    b = target.backend
    payloads = [b"", b"7:8:9", b"0:", bytes(range(256)), b"\xff\xfe" * 1000]
    keys = [target.key("users", f"get:{i}") for i in range(len(payloads))]
    leased = [target.key("users", f"list:{i}") for i in range(len(payloads))]
    lease = target.key("users", "~lease:x")
    generation = await b.bump(gen(target))
    for key, other, payload in zip(keys, leased, payloads, strict=True):
        assert await b.fill(gen(target), key, generation, payload, LONG_TTL)
        assert await b.fill_and_release(
            gen(target), other, generation, payload, LONG_TTL, lease, "t"
        )
    assert await b.read_many(gen(target), keys) == (generation, payloads)
    for other, payload in zip(leased, payloads, strict=True):
        assert await b.read_with_lease(gen(target), other, lease) == (generation, payload, False)


async def test_fill_at_another_generation_is_refused_and_stores_nothing(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    current = await b.bump(gen(target))
    assert await b.fill(gen(target), key, 0, b"stale rows", LONG_TTL) is False
    assert await b.fill(gen(target), key, current - 1, b"stale rows", LONG_TTL) is False
    assert await b.fill(gen(target), key, current + 1, b"future rows", LONG_TTL) is False
    assert await b.read(gen(target), key) == (current, None)
    # Nothing was written at all (not just hidden): there is no key to delete.
    assert await b.delete_pattern(key) == 0

    assert await b.fill(gen(target), key, current, b"fresh rows", LONG_TTL) is True
    assert await b.read(gen(target), key) == (current, b"fresh rows")
    assert await b.delete_pattern(key) == 1


async def test_bump_returns_the_new_generation_and_hides_older_entries(target: Target) -> None:
    b = target.backend
    users = [target.key("users", "list:a"), target.key("users", "get:1")]
    article = target.key("articles", "list:a")
    first = await b.bump(gen(target))
    # A missing generation starts from the clock (microseconds), not from 1.
    assert first > A_MICROSECOND_CLOCK_IN_2001
    for key in users:
        assert await b.fill(gen(target), key, first, b"users", LONG_TTL)
    # ... and the articles' first bump starts from the clock too, not after the users'.
    articles = await b.bump(gen(target, "articles"))
    assert articles > A_MICROSECOND_CLOCK_IN_2001
    assert await b.fill(gen(target, "articles"), article, articles, b"articles", LONG_TTL)
    assert await b.read_many(gen(target), users) == (first, [b"users", b"users"])

    # Each bump is above the last (the next number, or the clock if that is ahead).
    second = await b.bump(gen(target))
    assert second > first
    assert await b.read_many(gen(target), users) == (second, [None, None])
    third = await b.bump(gen(target))
    assert third > second
    assert await b.read(gen(target), users[0]) == (third, None)
    # Generations are per model: the articles entry is still served.
    assert await b.read(gen(target, "articles"), article) == (articles, b"articles")


async def test_a_generation_created_again_after_data_loss_exceeds_every_earlier_one(
    target: Target,
) -> None:
    # Redis without persistence forgets the generation when it restarts, while readers still
    # hold numbers from before. Had it started again at 1, a reader holding 1 from before
    # would see its number current again and store (or be served) rows older than writes
    # the old generations covered; a clock-based start never meets an earlier number.
    b, key = target.backend, target.key("users", "list:a")
    first = await b.bump(gen(target))
    earlier = [first, await b.bump(gen(target)), await b.bump(gen(target))]
    assert earlier == sorted(set(earlier))
    assert await b.fill(gen(target), key, earlier[-1], b"rows", LONG_TTL)

    if target.client is None:
        # The in-process backend loses its data with its process: a new one starts empty.
        b = MemoryBackend(clock=target.clock)
        # Three bumps in a row can take under a microsecond here, faster than the clock the
        # numbers come from; a process restart cannot. Let the clock catch up (microseconds).
        while time.time_ns() // 1000 <= earlier[-1]:
            pass
    else:
        await target.client.unlink(gen(target))  # what a restart does to the key

    assert await b.read(gen(target), key) == (0, None)
    recreated = await b.bump(gen(target))
    assert recreated > max(earlier)
    latest = await b.bump(gen(target))
    assert latest > recreated
    # Readers that read a generation before the loss can neither fill nor be served.
    for old in earlier:
        assert await b.fill(gen(target), key, old, b"old rows", LONG_TTL) is False
    assert await b.read(gen(target), key) == (latest, None)


async def test_read_many_keeps_order_and_judges_each_entry(target: Target) -> None:
    b = target.backend
    old, fresh, missing = (target.key("users", f"get:{i}") for i in (1, 2, 3))
    assert await b.fill(gen(target), old, await b.bump(gen(target)), b"old", LONG_TTL)
    current = await b.bump(gen(target))
    assert await b.fill(gen(target), fresh, current, b"fresh", LONG_TTL)
    assert await b.read_many(gen(target), [fresh, missing, old, fresh]) == (
        current,
        [b"fresh", None, None, b"fresh"],
    )


async def test_entries_leases_and_locks_expire_after_their_ttl(target: Target) -> None:
    b = target.backend
    short, long = target.key("users", "list:short"), target.key("users", "list:long")
    leased = target.key("users", "list:leased")
    lease, lock = target.key("users", "~lease:list:short"), target.key("users", "~warm-lock")
    other_lease = target.key("users", "~lease:list:leased")
    current = await b.bump(gen(target))
    assert await b.fill(gen(target), short, current, b"short", 0.2)
    assert await b.fill(gen(target), long, current, b"long", LONG_TTL)
    assert await b.fill_and_release(gen(target), leased, current, b"leased", 0.2, other_lease, "t")
    assert await b.acquire_lease(lease, "first", 0.2)
    assert await b.acquire_lease(lock, "first", 0.2)
    assert await b.read_with_lease(gen(target), short, lease) == (current, b"short", True)
    if target.client is not None:
        # The TTL reaches Redis in milliseconds, as given.
        assert 0 < await target.pttl(short) <= 200
        assert 0 < await target.pttl(leased) <= 200
        assert 0 < await target.pttl(lease) <= 200
        assert 0 < await target.pttl(lock) <= 200
        assert LONG_TTL * 1000 - 5_000 < await target.pttl(long) <= LONG_TTL * 1000

    await target.elapse(0.4)

    assert await b.read_many(gen(target), [short, long, leased]) == (
        current,
        [None, b"long", None],
    )
    # An expired lease reads as free.
    assert await b.read_with_lease(gen(target), long, lease) == (current, b"long", False)
    assert await b.acquire_lease(lease, "second", LONG_TTL)
    assert await b.acquire_lease(lock, "second", LONG_TTL)


# -- delete_pattern ------------------------------------------------------------------------


async def test_delete_pattern_deletes_matching_keys_on_every_node(target: Target) -> None:
    b = target.backend
    models = target.models_on_distinct_nodes(3)
    if isinstance(target.client, RedisCluster):
        # The three models' keys really live on three different primaries.
        nodes = {target.client.get_node_from_key(target.key(m, "x")).name for m in models}  # type: ignore[union-attr]
        assert len(nodes) == 3 == len(target.client.get_primaries())
    per_model = 400  # more than one SCAN batch (COUNT 500) and one UNLINK chunk in all
    generations: dict[str, int] = {}
    for m in models:
        first = await b.bump(gen(target, m))  # creates the metadata "~gen"
        # get:1 is stored under a generation that is no longer current: hidden, not gone.
        assert await b.fill(gen(target, m), target.key(m, "get:1"), first, b"row", LONG_TTL)
        current = generations[m] = await b.bump(gen(target, m))
        assert await b.fill(gen(target, m), target.key(m, "get:2"), current, b"row", LONG_TTL)
        assert await b.acquire_lease(target.key(m, "~lease:list:1"), "holder", LONG_TTL)
    await gather_in_batches(
        [
            b.fill(gen(target, m), target.key(m, f"list:{i}"), generations[m], b"x", LONG_TTL)
            for m in models
            for i in range(per_model)
        ]
    )

    # One model's namespace only.
    assert await b.delete_pattern(target.key(models[0], "list:*")) == per_model
    m0, m1 = models[0], models[1]
    assert await b.read(gen(target, m0), target.key(m0, "list:7")) == (generations[m0], None)
    assert await b.read(gen(target, m1), target.key(m1, "list:7")) == (generations[m1], b"x")
    # Every model: reaches all nodes.
    assert await b.delete_pattern(f"{target.prefix}:*:list:*") == 2 * per_model
    assert await b.delete_pattern(f"{target.prefix}:*:list:*") == 0
    # Everything under the prefix except metadata (":~"), even though the pattern matches it.
    assert await b.delete_pattern(f"{target.prefix}:*") == 2 * len(models)
    for m in models:
        assert await b.read(gen(target, m), target.key(m, "get:2")) == (generations[m], None)
        assert not await b.acquire_lease(target.key(m, "~lease:list:1"), "thief", LONG_TTL)
    if target.client is not None:
        assert await target.raw_keys() == {
            target.key(m, rest) for m in models for rest in ("~gen", "~gen:server", "~lease:list:1")
        }


async def test_delete_pattern_matches_globs_not_prefixes(target: Target) -> None:
    b = target.backend
    current = await b.bump(gen(target))
    for name in ("list:a", "list:b", "list:ab", "get:a"):
        assert await b.fill(gen(target), target.key("users", name), current, b"x", LONG_TTL)
    assert await b.delete_pattern(target.key("users", "list:?")) == 2
    assert await b.delete_pattern(target.key("users", "list")) == 0
    assert await b.read_many(
        gen(target), [target.key("users", n) for n in ("list:a", "list:ab", "get:a")]
    ) == (current, [None, b"x", b"x"])


# -- leases and locks ----------------------------------------------------------------------


async def test_lease_is_exclusive_until_released_by_its_holder(target: Target) -> None:
    b, lease = target.backend, target.key("users", "~lease:list:a")
    assert await b.acquire_lease(lease, "t1", LONG_TTL) is True
    assert await b.acquire_lease(lease, "t2", LONG_TTL) is False
    await b.release_lease(lease, "t2")  # not the holder: nothing happens
    assert await b.acquire_lease(lease, "t3", LONG_TTL) is False
    await b.release_lease(lease, "t1")
    assert await b.acquire_lease(lease, "t2", LONG_TTL) is True
    # Releasing a lease nobody holds is harmless, and leases of other keys are independent.
    await b.release_lease(target.key("users", "~lease:none"), "t1")
    assert await b.acquire_lease(target.key("users", "~lease:list:b"), "t1", LONG_TTL) is True


async def test_warm_lock_is_a_lease_exclusive_until_it_expires(target: Target) -> None:
    b, lock = target.backend, target.key("users", "~warm-lock")
    assert await b.acquire_lease(lock, "process-1", LONG_TTL) is True
    assert await b.acquire_lease(lock, "process-2", LONG_TTL) is False
    assert await b.acquire_lease(lock, "process-1", LONG_TTL) is False  # not re-entrant
    lock_of_other_model = target.key("articles", "~warm-lock")
    assert await b.acquire_lease(lock_of_other_model, "process-2", LONG_TTL) is True


async def test_try_lock_is_a_deprecated_alias_of_acquire_lease(target: Target) -> None:
    b, lock = target.backend, target.key("users", "~warm-lock")
    with pytest.warns(DeprecationWarning, match="acquire_lease"):
        assert await b.try_lock(lock, "process-1", LONG_TTL) is True  # type: ignore[attr-defined]
    assert await b.acquire_lease(lock, "process-2", LONG_TTL) is False


async def test_concurrent_lease_requests_have_one_winner(target: Target) -> None:
    lease = target.key("users", "~lease:list:hot")
    won = await asyncio.gather(
        *(target.backend.acquire_lease(lease, f"t{i}", LONG_TTL) for i in range(20))
    )
    assert won.count(True) == 1


# -- read_with_lease and fill_and_release: the miss path's two round trips -----------------


async def test_read_with_lease_reports_generation_entry_and_lease_together(target: Target) -> None:
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    assert await b.read_with_lease(gen(target), key, lease) == (0, None, False)
    first = await b.bump(gen(target))
    assert await b.read_with_lease(gen(target), key, lease) == (first, None, False)
    assert await b.fill(gen(target), key, first, b"rows", LONG_TTL)
    assert await b.read_with_lease(gen(target), key, lease) == (first, b"rows", False)
    assert await b.acquire_lease(lease, "filler", LONG_TTL)
    assert await b.read_with_lease(gen(target), key, lease) == (first, b"rows", True)
    # An entry of an older generation reads as missing, the lease as held all the same.
    current = await b.bump(gen(target))
    assert await b.read_with_lease(gen(target), key, lease) == (current, None, True)
    # Another key's lease says nothing about this one.
    other_lease = target.key("users", "~lease:b")
    assert await b.read_with_lease(gen(target), key, other_lease) == (current, None, False)
    await b.release_lease(lease, "filler")
    assert await b.read_with_lease(gen(target), key, lease) == (current, None, False)
    # It agrees with read() on everything read() reports.
    assert await b.fill(gen(target), key, current, b"fresh", LONG_TTL)
    generation, payload, _ = await b.read_with_lease(gen(target), key, lease)
    assert (generation, payload) == await b.read(gen(target), key) == (current, b"fresh")


async def test_fill_and_release_at_the_current_generation_stores_and_frees_the_lease(
    target: Target,
) -> None:
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    current = await b.bump(gen(target))
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    assert await b.fill_and_release(gen(target), key, current, b"rows", LONG_TTL, lease, "mine")
    assert await b.read_with_lease(gen(target), key, lease) == (current, b"rows", False)
    assert await b.acquire_lease(lease, "next", LONG_TTL)  # free for the next filler


async def test_fill_and_release_of_a_stale_generation_stores_nothing_but_frees_the_lease(
    target: Target,
) -> None:
    # The stale-set race: the reader read the generation, a writer committed and bumped,
    # then the reader's fill arrives. It must be refused, and its lease must not linger
    # (other processes would wait on it for nothing).
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    read_at = await b.bump(gen(target))
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    bumped = await b.bump(gen(target))
    refused = await b.fill_and_release(gen(target), key, read_at, b"old", LONG_TTL, lease, "mine")
    assert refused is False
    assert await b.read_with_lease(gen(target), key, lease) == (bumped, None, False)
    # Refused means not written at all: there is no key to delete.
    assert await b.delete_pattern(key) == 0
    # A generation from the future is refused too.
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    assert not await b.fill_and_release(
        gen(target), key, bumped + 1, b"future", LONG_TTL, lease, "mine"
    )
    assert await b.read_with_lease(gen(target), key, lease) == (bumped, None, False)


async def test_fill_and_release_with_another_token_leaves_the_holders_lease(
    target: Target,
) -> None:
    # Our lease expired while the query ran and another process took it: our fill may still
    # land (the generation check keeps it safe) but the other process's lease must stay.
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    current = await b.bump(gen(target))
    assert await b.acquire_lease(lease, "theirs", LONG_TTL)
    assert await b.fill_and_release(gen(target), key, current, b"rows", LONG_TTL, lease, "mine")
    assert await b.read_with_lease(gen(target), key, lease) == (current, b"rows", True)
    assert not await b.acquire_lease(lease, "third", LONG_TTL)
    # Refused and wrong token: nothing stored, lease untouched.
    stale_key = target.key("users", "list:b")
    assert not await b.fill_and_release(
        gen(target), stale_key, current - 1, b"old", LONG_TTL, lease, "mine"
    )
    assert await b.read_with_lease(gen(target), stale_key, lease) == (current, None, True)
    # The holder still releases it with its own token.
    assert await b.fill_and_release(gen(target), key, current, b"newer", LONG_TTL, lease, "theirs")
    assert await b.read_with_lease(gen(target), key, lease) == (current, b"newer", False)


async def test_fill_and_release_without_any_lease_stores_and_creates_none(target: Target) -> None:
    # The lease request may have failed or lost (it runs alongside the query): filling
    # without one is allowed, and must not leave a lease behind.
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    current = await b.bump(gen(target))
    assert await b.fill_and_release(gen(target), key, current, b"rows", LONG_TTL, lease, "mine")
    assert await b.read_with_lease(gen(target), key, lease) == (current, b"rows", False)
    if target.client is not None:
        # The generation and the entry; no lease was created.
        assert await target.raw_keys() == {gen(target), f"{gen(target)}:server", key}
    assert await b.acquire_lease(lease, "next", LONG_TTL)
    if target.client is not None:
        assert await target.raw_keys() == {gen(target), f"{gen(target)}:server", key, lease}


# -- usage tracking ------------------------------------------------------------------------


def usage(target: Target) -> tuple[str, str]:
    return target.key("users", "~usage"), target.key("users", "~usage-specs")


async def test_usage_accumulates_and_ranks_by_score(target: Target) -> None:
    b, (scores, specs) = target.backend, usage(target)
    await b.incr_usage(scores, specs, {"a": 1, "b": 2}, {"a": b"A", "b": b"B"}, 10)
    await b.incr_usage(scores, specs, {"a": 2, "c": 0.5}, {"c": b"C"}, 10)
    assert await b.top_usage(scores, specs, 10, 0) == [
        ("a", 3.0, b"A"),
        ("b", 2.0, b"B"),
        ("c", 0.5, b"C"),
    ]
    assert await b.top_usage(scores, specs, 2, 0) == [("a", 3.0, b"A"), ("b", 2.0, b"B")]
    assert await b.top_usage(scores, specs, 10, 2) == [("a", 3.0, b"A"), ("b", 2.0, b"B")]
    assert await b.top_usage(scores, specs, 10, 3.5) == []
    assert await b.top_usage(target.key("none", "~usage"), target.key("none", "~s"), 5, 0) == []


async def test_usage_ties_rank_by_member_even_where_the_limit_cuts_them(target: Target) -> None:
    b, (scores, specs) = target.backend, usage(target)
    await b.incr_usage(scores, specs, {"d": 1, "b": 1, "a": 1, "c": 1, "z": 5}, {}, 10)
    assert [m for m, _, _ in await b.top_usage(scores, specs, 10, 0)] == ["z", "a", "b", "c", "d"]
    assert await b.top_usage(scores, specs, 3, 0) == [
        ("z", 5.0, None),
        ("a", 1.0, None),
        ("b", 1.0, None),
    ]


async def test_usage_is_trimmed_to_max_tracked_with_its_specs(target: Target) -> None:
    b, (scores, specs) = target.backend, usage(target)
    counts = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 1.0}
    await b.incr_usage(scores, specs, counts, {m: m.upper().encode() for m in counts}, 2)
    assert await b.top_usage(scores, specs, 10, 0) == [("a", 5.0, b"A"), ("b", 4.0, b"B")]
    # "c" comes back without a spec: its spec went when it was trimmed.
    await b.incr_usage(scores, specs, {"c": 1}, {}, 10)
    assert await b.top_usage(scores, specs, 10, 0) == [
        ("a", 5.0, b"A"),
        ("b", 4.0, b"B"),
        ("c", 1.0, None),
    ]
    # Where the cut falls inside a tie, the smaller members stay.
    await b.incr_usage(scores, specs, {"x": 1, "w": 1}, {"w": b"W", "x": b"X"}, 4)
    assert await b.top_usage(scores, specs, 10, 0) == [
        ("a", 5.0, b"A"),
        ("b", 4.0, b"B"),
        ("c", 1.0, None),
        ("w", 1.0, b"W"),
    ]
    await b.incr_usage(scores, specs, {}, {}, 0)
    assert await b.top_usage(scores, specs, 10, 0) == []


async def test_decay_multiplies_every_score(target: Target) -> None:
    b, (scores, specs) = target.backend, usage(target)
    await b.incr_usage(scores, specs, {"a": 4, "b": 1}, {"a": b"A"}, 10)
    await b.decay_usage(scores, 0.5)
    assert await b.top_usage(scores, specs, 10, 0) == [("a", 2.0, b"A"), ("b", 0.5, None)]
    assert await b.top_usage(scores, specs, 10, 1) == [("a", 2.0, b"A")]
    await b.decay_usage(scores, 1.0)
    assert await b.top_usage(scores, specs, 1, 0) == [("a", 2.0, b"A")]
    # Nothing tracked yet: no error, nothing made up.
    await b.decay_usage(target.key("none", "~usage"), 0.5)
    assert await b.top_usage(target.key("none", "~usage"), target.key("none", "~s"), 10, 0) == []


# -- lifecycle -----------------------------------------------------------------------------


async def test_ping(backend: CacheBackend) -> None:
    assert await backend.ping() is True


async def test_close_leaves_a_working_backend_and_the_callers_client_open(target: Target) -> None:
    await target.backend.close()
    await target.backend.close()
    key = target.key("users", "get:1")
    current = await target.backend.bump(gen(target))
    assert await target.backend.fill(gen(target), key, current, b"row", LONG_TTL)
    assert await target.backend.read(gen(target), key) == (current, b"row")
    if target.client is not None:
        assert await target.client.ping()


# -- Redis only ----------------------------------------------------------------------------


@pytest.fixture(params=["redis", "cluster"])
async def own_client(
    request: pytest.FixtureRequest, redis_cluster: RedisCluster
) -> AsyncIterator[tuple[str, Redis | RedisCluster]]:
    """A client of its own, built with ``decode_responses=True`` as many applications do (the
    standalone one speaking RESP3 too), and a key prefix; its keys are deleted afterwards."""
    prefix = f"brtest-{uuid.uuid4().hex[:12]}"
    client: Redis | RedisCluster
    if request.param == "redis":
        client = Redis.from_url(REDIS_URL, decode_responses=True, protocol=3)
    else:
        port = redis_cluster.get_default_node().port
        client = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
    try:
        yield prefix, client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.unlink(*keys)
        await client.aclose()


async def test_a_decoding_client_still_gets_bytes_back(
    own_client: tuple[str, Redis | RedisCluster],
) -> None:
    prefix, client = own_client
    b = RedisBackend(client)
    generation, key = f"{prefix}:{{users}}:~gen", f"{prefix}:{{users}}:get:1"
    payload = b"\xff\x00 not utf-8 \x80"
    first = await b.bump(generation)
    assert isinstance(first, int)
    assert await b.fill(generation, key, first, payload, LONG_TTL)
    assert await b.read(generation, key) == (first, payload)
    lease, other = f"{prefix}:{{users}}:~lease:1", f"{prefix}:{{users}}:get:2"
    assert await b.acquire_lease(lease, "t", LONG_TTL)
    assert await b.read_with_lease(generation, key, lease) == (first, payload, True)
    current = await b.bump(generation)
    assert current > first
    assert await b.fill_and_release(generation, other, current, payload, LONG_TTL, lease, "t")
    assert await b.read_with_lease(generation, other, lease) == (current, payload, False)
    scores, specs = f"{prefix}:{{users}}:~usage", f"{prefix}:{{users}}:~usage-specs"
    await b.incr_usage(scores, specs, {"q": 2}, {"q": b"\xfe spec"}, 10)
    assert await b.top_usage(scores, specs, 10, 0) == [("q", 2.0, b"\xfe spec")]
    assert await b.delete_pattern(f"{prefix}:*") == 2


async def test_the_miss_path_costs_one_command_per_step(
    own_client: tuple[str, Redis | RedisCluster],
) -> None:
    # A miss reads generation, entry and lease in one MGET, then fills and releases in one
    # script: two round trips, whatever the client (standalone or cluster). (Only the very
    # first read of a model, which finds no generation, adds a bump before its query.)
    prefix, client = own_client
    sent: list[str] = []
    execute = client.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return execute(*args, **options)

    client.execute_command = recording  # type: ignore[method-assign]
    b = RedisBackend(client)
    generation = f"{prefix}:{{users}}:~gen"
    key, lease = f"{prefix}:{{users}}:list:a", f"{prefix}:{{users}}:~lease:a"
    # A fill needs an existing generation: create it, as the read path does for a model that
    # has none. The first call of each script may also load it (NOSCRIPT, SCRIPT LOAD,
    # EVALSHA); count after them.
    current = await b.bump(generation)
    assert await b.fill_and_release(generation, key, current, b"first", LONG_TTL, lease, "t")
    # The client connected during those: its first read also reads the server's identity.
    assert await b.read_with_lease(generation, key, lease) == (current, b"first", False)
    sent.clear()
    assert await b.read_with_lease(generation, key, lease) == (current, b"first", False)
    assert sent == ["MGET"]
    sent.clear()
    assert await b.fill_and_release(generation, key, current, b"rows", LONG_TTL, lease, "t")
    assert sent == ["EVALSHA"]
    sent.clear()
    assert await b.bump(generation) > current
    assert sent == ["EVALSHA"]


async def test_a_value_not_written_by_fill_is_never_served(redis_client: Redis) -> None:
    # MemoryBackend cannot hold such a value; in Redis another program could have written one.
    b, prefix = RedisBackend(redis_client), f"brtest-{uuid.uuid4().hex[:12]}"
    keys = [f"{prefix}:{{users}}:get:{i}" for i in range(3)]
    try:
        await redis_client.mset({keys[0]: b"no separator", keys[1]: b"x1:payload"})
        await redis_client.set(keys[2], b"0:payload")
        assert await b.read_many(f"{prefix}:{{users}}:~gen", keys) == (0, [None, None, b"payload"])
        for key in keys[:2]:
            assert await b.read_with_lease(f"{prefix}:{{users}}:~gen", key, key) == (0, None, True)
    finally:
        await redis_client.unlink(*keys)


async def test_scripts_are_reloaded_after_a_script_flush(
    redis_cluster: RedisCluster, spare_redis: RedisServer
) -> None:
    # A server that restarted or was flushed has forgotten every script; on a cluster a node
    # may also simply not have seen one yet. SCRIPT FLUSH is not something to do to the shared
    # server, hence a spare one.
    fill_sha = hashlib.sha1(SCRIPTS["fill"].encode()).hexdigest()
    standalone = Redis(host="127.0.0.1", port=spare_redis.port)
    try:
        for client in (standalone, redis_cluster):
            b, prefix = RedisBackend(client), f"brtest-{uuid.uuid4().hex[:12]}"
            models = [f"m{i}" for i in range(12)]  # on every node of the cluster
            generation = f"{prefix}:{{users}}:~gen"
            # Fills need existing generations; create them all before the flush, so that the
            # fills below are the first script calls each node sees after it.
            first = await b.bump(generation)
            generations = {m: await b.bump(f"{prefix}:{{{m}}}:~gen") for m in models}
            assert await b.fill(generation, f"{prefix}:{{users}}:a", first, b"1", LONG_TTL)
            await client.script_flush()  # RedisCluster sends it to every primary
            nodes = client.get_primaries() if isinstance(client, RedisCluster) else [None]
            for node in nodes:
                target = {} if node is None else {"target_nodes": node}
                assert await client.execute_command("SCRIPT EXISTS", fill_sha, **target) in (
                    [0],
                    [False],
                )
            for m in models:
                key = f"{prefix}:{{{m}}}:a"
                assert await b.fill(f"{prefix}:{{{m}}}:~gen", key, generations[m], b"1", LONG_TTL)
                await b.incr_usage(f"{prefix}:{{{m}}}:~u", f"{prefix}:{{{m}}}:~s", {"q": 1}, {}, 5)
            await b.release_lease(f"{prefix}:{{users}}:~lease", "t")
            current = await b.bump(generation)  # bump and fill_and_release are scripts too
            assert current > first
            lease = f"{prefix}:{{users}}:~lease"
            assert await b.fill_and_release(
                generation, f"{prefix}:{{users}}:a", current, b"2", LONG_TTL, lease, "t"
            )
            assert await b.top_usage(f"{prefix}:{{m0}}:~u", f"{prefix}:{{m0}}:~s", 5, 0) == [
                ("q", 1.0, None)
            ]
            assert await b.delete_pattern(f"{prefix}:*") == len(models) + 1
            await client.unlink(generation)
            for m in models:
                await client.unlink(f"{prefix}:{{{m}}}:~u", f"{prefix}:{{{m}}}:~gen")
    finally:
        await standalone.aclose()


def test_only_asyncio_clients_are_accepted() -> None:
    sync_client = redis.Redis()
    try:
        with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis or redis\.asyncio"):
            RedisBackend(sync_client)  # type: ignore[arg-type]
    finally:
        sync_client.close()


# -- the spare_redis fixture ---------------------------------------------------------------


async def test_spare_redis_can_be_paused_resumed_killed_and_restarted(
    spare_redis: RedisServer,
) -> None:
    port, process = spare_redis
    assert (port, process) == (spare_redis.port, spare_redis.process)
    # redis-py 8 retries 10 times with backoff by default (seconds against a dead server).
    client = Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.3,
        socket_connect_timeout=0.3,
        retry=Retry(NoBackoff(), 0),
    )
    b = RedisBackend(client)
    generation = "{users}:~gen"
    try:
        before = await b.bump(generation)

        spare_redis.pause()
        with pytest.raises(redis.exceptions.TimeoutError):
            await b.read(generation, "{users}:get:1")
        spare_redis.resume()
        assert await b.read(generation, "{users}:get:1") == (before, None)

        spare_redis.kill()
        assert spare_redis.process.returncode is not None
        with pytest.raises(redis.exceptions.ConnectionError):
            await b.ping()
        spare_redis.restart()
        assert spare_redis.process is not process
        assert spare_redis.port == port
        # A restarted server keeps nothing: the generation reads as zero again, and the next
        # bump starts from the server's clock, above every number handed out before.
        assert await b.read(generation, "{users}:get:1") == (0, None)
        assert await b.bump(generation) > before
    finally:
        await client.aclose()


@pytest.mark.usefixtures("_redis_tools")
async def test_delete_pattern_raises_the_clients_error_when_a_cluster_node_is_down(
    tmp_path: Path,
) -> None:
    # A cluster of its own: this test kills one of its nodes.
    servers = await asyncio.to_thread(start_cluster, tmp_path)
    client = RedisCluster(host="127.0.0.1", port=servers[0].port, retry=Retry(NoBackoff(), 0))
    try:
        b = RedisBackend(client)
        generation = await b.bump("{users}:~gen")
        assert await b.fill("{users}:~gen", "{users}:get:1", generation, b"row", LONG_TTL)
        assert await b.delete_pattern("*") == 1
        servers[1].kill()
        # The client's own error, as every other method raises, not an ExceptionGroup.
        with pytest.raises(redis.exceptions.ConnectionError):
            await b.delete_pattern("*")
        # Back on the same port with the same nodes.conf, the node rejoins (empty: nothing
        # is persisted) and the backend reaches it again without being rebuilt.
        servers[1].start()
        await asyncio.to_thread(wait_for_cluster, servers)
        # The generation may have lived on the restarted node (which came back empty): fill
        # at whatever generation a bump gives now.
        generation = await b.bump("{users}:~gen")
        assert await b.fill("{users}:~gen", "{users}:get:1", generation, b"row", LONG_TTL)
        assert await b.delete_pattern("*") == 1
        # (This also lets aclose() below close the connections: redis-py 8.1's
        # RedisCluster.aclose() does nothing while a reinitialisation is pending after a
        # connection error.)
    finally:
        await client.aclose()
        for server in servers:
            server.stop()
