"""The CacheBackend contract for write intents (``begin_write`` / ``end_write``), on every
backend (memory, redis, cluster) through ``tests/contract/conftest.py``'s ``target``.

An intent is recorded before a write's COMMIT and ended after it: while any intent stands no
fill is stored; starting and ending one bump the generation; whoever removes an expired
intent (a writer that died after its COMMIT) moves the generation in the same step. Kept
apart from ``test_backends.py`` (already long), with the same fixtures.
"""

from __future__ import annotations

import asyncio

from tests.contract.conftest import Target

LONG_TTL = 60.0
LONG_INTENT = 30.0
SHORT_INTENT = 0.2


def gen(target: Target, model: str = "users") -> str:
    return target.key(model, "~gen")


async def test_an_intent_bumps_and_refuses_fills_until_it_ends(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    before = await b.bump(gen(target))
    assert await b.fill(gen(target), key, before, b"before the write", LONG_TTL)

    during = await b.begin_write(gen(target), "writer", LONG_INTENT)
    # Entries filled before the intent belong to an older generation: never served again,
    # even if the writer never ends its intent.
    assert during > before
    assert await b.read(gen(target), key) == (during, None)
    # No fill while it stands, at the new generation or any other.
    for generation in (before, during, during + 1):
        assert await b.fill(gen(target), key, generation, b"during", LONG_TTL) is False
    assert await b.read(gen(target), key) == (during, None)
    fresh = target.key("users", "list:b")
    assert await b.fill(gen(target), fresh, during, b"during", LONG_TTL) is False
    assert await b.delete_pattern(fresh) == 0  # refused means nothing written

    after = await b.end_write(gen(target), "writer")
    assert after > during
    # A reader that read the generation while the intent stood still cannot fill.
    assert await b.fill(gen(target), key, during, b"read during", LONG_TTL) is False
    assert await b.fill(gen(target), key, after, b"after", LONG_TTL) is True
    assert await b.read(gen(target), key) == (after, b"after")


async def test_fill_and_release_is_refused_under_an_intent_and_still_frees_the_lease(
    target: Target,
) -> None:
    b = target.backend
    key, lease = target.key("users", "list:a"), target.key("users", "~lease:a")
    await b.bump(gen(target))
    during = await b.begin_write(gen(target), "writer", LONG_INTENT)
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    refused = await b.fill_and_release(gen(target), key, during, b"rows", LONG_TTL, lease, "mine")
    assert refused is False
    assert await b.read_with_lease(gen(target), key, lease) == (during, None, False)
    after = await b.end_write(gen(target), "writer")
    assert await b.acquire_lease(lease, "mine", LONG_TTL)
    assert await b.fill_and_release(gen(target), key, after, b"rows", LONG_TTL, lease, "mine")
    assert await b.read_with_lease(gen(target), key, lease) == (after, b"rows", False)


async def test_one_writers_end_leaves_another_writers_intent_standing(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    await b.begin_write(gen(target), "first", LONG_INTENT)
    await b.begin_write(gen(target), "second", LONG_INTENT)
    after_first = await b.end_write(gen(target), "first")
    assert await b.fill(gen(target), key, after_first, b"rows", LONG_TTL) is False
    # Ending the first again (a retry) changes nothing for the second.
    again = await b.end_write(gen(target), "first")
    assert await b.fill(gen(target), key, again, b"rows", LONG_TTL) is False
    after_both = await b.end_write(gen(target), "second")
    assert after_both > again > after_first
    assert await b.fill(gen(target), key, after_both, b"rows", LONG_TTL) is True


async def test_an_expired_intent_is_completed_by_the_first_fill(target: Target) -> None:
    # The writer died after its COMMIT: its intent expires, and the first fill after that
    # moves the generation (the reader may have read the database before the COMMIT) and
    # is refused; a reader of the new generation fills.
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    during = await b.begin_write(gen(target), "dead", SHORT_INTENT)
    assert await b.fill(gen(target), key, during, b"read before the commit", LONG_TTL) is False
    await target.elapse(SHORT_INTENT + 0.1)

    assert await b.fill(gen(target), key, during, b"read before the commit", LONG_TTL) is False
    moved, entry = await b.read(gen(target), key)
    assert moved > during
    assert entry is None
    assert await b.fill(gen(target), key, moved, b"read after", LONG_TTL) is True
    assert await b.read(gen(target), key) == (moved, b"read after")


async def test_a_fill_at_an_old_generation_does_not_complete_an_expired_intent(
    target: Target,
) -> None:
    # Refused on its generation alone; the next reader's fill does the completing.
    b, key = target.backend, target.key("users", "list:a")
    before = await b.bump(gen(target))
    during = await b.begin_write(gen(target), "dead", SHORT_INTENT)
    await target.elapse(SHORT_INTENT + 0.1)
    assert await b.fill(gen(target), key, before, b"old", LONG_TTL) is False
    assert (await b.read(gen(target), key))[0] == during
    assert await b.fill(gen(target), key, during, b"rows", LONG_TTL) is False
    assert (await b.read(gen(target), key))[0] > during


async def test_a_dead_writers_intent_does_not_outlive_other_writes(target: Target) -> None:
    # Under continuous writes by others, the expired intent is dropped by the next write's
    # start (whose bump completes it); it does not keep fills refused forever.
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    await b.begin_write(gen(target), "dead", SHORT_INTENT)
    await target.elapse(SHORT_INTENT + 0.1)
    await b.begin_write(gen(target), "alive", LONG_INTENT)
    after = await b.end_write(gen(target), "alive")
    assert await b.fill(gen(target), key, after, b"rows", LONG_TTL) is True


async def test_an_intent_that_outlives_its_duration_ends_like_any_other(target: Target) -> None:
    # A COMMIT slower than the intent: the intent expires first (fills then complete it),
    # and the writer's end still removes its token and bumps.
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    during = await b.begin_write(gen(target), "slow", SHORT_INTENT)
    await target.elapse(SHORT_INTENT + 0.1)
    after = await b.end_write(gen(target), "slow")
    assert after > during
    assert await b.fill(gen(target), key, after, b"rows", LONG_TTL) is True


async def test_ending_an_unknown_intent_bumps(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    before = await b.bump(gen(target))
    after = await b.end_write(gen(target), "never begun")
    assert after > before
    assert await b.fill(gen(target), key, after, b"rows", LONG_TTL) is True


async def test_intents_are_per_model(target: Target) -> None:
    b = target.backend
    articles = target.key("articles", "list:a")
    await b.bump(gen(target))
    current = await b.bump(gen(target, "articles"))
    await b.begin_write(gen(target), "writer", LONG_INTENT)
    assert await b.fill(gen(target, "articles"), articles, current, b"rows", LONG_TTL) is True


async def test_a_pattern_delete_does_not_lift_an_intent(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    during = await b.begin_write(gen(target), "writer", LONG_INTENT)
    await b.delete_pattern(target.key("users", "*"))
    assert await b.fill(gen(target), key, during, b"rows", LONG_TTL) is False


async def test_concurrent_writers_each_bump_and_the_last_end_opens_fills(target: Target) -> None:
    b, key = target.backend, target.key("users", "list:a")
    await b.bump(gen(target))
    tokens = [f"w{i}" for i in range(20)]
    begun = await asyncio.gather(*(b.begin_write(gen(target), t, LONG_INTENT) for t in tokens))
    assert len(set(begun)) == len(tokens)  # every start bumped to a number of its own
    ended = await asyncio.gather(*(b.end_write(gen(target), t) for t in tokens[:-1]))
    assert await b.fill(gen(target), key, max(ended), b"rows", LONG_TTL) is False
    last = await b.end_write(gen(target), tokens[-1])
    assert await b.fill(gen(target), key, last, b"rows", LONG_TTL) is True


async def test_the_intents_live_in_the_models_slot_with_no_ttl(target: Target) -> None:
    if target.client is None:
        return  # nothing of Redis to look at
    b = target.backend
    await b.bump(gen(target))
    await b.begin_write(gen(target), "writer", LONG_INTENT)
    keys = await target.raw_keys()
    (intents,) = [k for k in keys if k.endswith(":intents")]
    assert intents == f"{gen(target)}:intents"
    # No TTL: an expiring set would drop a dead writer's token without the bump that
    # completes its invalidation.
    assert await target.pttl(intents) == -1
    await b.end_write(gen(target), "writer")
    assert not any(k.endswith(":intents") for k in await target.raw_keys())
