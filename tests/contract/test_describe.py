"""``describe``: what a backend holds for one model, as ``baserepo cache stats`` reads it, on
every backend (memory, Redis, Redis Cluster). It reports and changes nothing."""

from __future__ import annotations

from baserepo.cache._protocol import DescribableBackend
from tests.contract.conftest import Target

LONG_TTL = 600.0


def gen(target: Target) -> str:
    return target.key("users", "~gen")


async def test_every_built_in_backend_is_describable(target: Target) -> None:
    assert isinstance(target.backend, DescribableBackend)


async def test_a_model_with_nothing_stored_has_no_generation_and_no_keys(target: Target) -> None:
    assert isinstance(target.backend, DescribableBackend)
    view = await target.backend.describe(gen(target), target.key("users", "*"))
    assert (view.generation, view.moved_under, view.intent_seconds_left, view.keys) == (
        None,
        None,
        (),
        (),
    )


async def test_describe_shows_generation_entries_intents_and_leases(target: Target) -> None:
    b = target.backend
    assert isinstance(b, DescribableBackend)
    old = await b.bump(gen(target))
    stale_key, current_key = target.key("users", "list:a"), target.key("users", "get:1")
    assert await b.fill(gen(target), stale_key, old, b"old rows", LONG_TTL)
    current = await b.bump(gen(target))
    assert await b.fill(gen(target), current_key, current, b"x" * 1000, LONG_TTL)
    assert await b.acquire_lease(target.key("users", "~lease:abc"), "token", 30)
    moved = await b.begin_write(gen(target), "writer", 60)
    other_model = target.key("teams", "list:a")  # same prefix, another model: not listed
    await b.bump(target.key("teams", "~gen"))

    view = await b.describe(gen(target), target.key("users", "*"))

    assert view.generation == moved > current
    assert view.moved_under == view.server  # moved under the server that holds it now
    assert len(view.intent_seconds_left) == 1
    assert 50 < view.intent_seconds_left[0] <= 60
    stored = {key.key: key for key in view.keys}
    assert other_model not in stored
    assert stored[stale_key].generation == old
    assert stored[current_key].generation == current
    size = stored[current_key].size
    assert size is not None
    assert size >= 1000
    ttl = stored[current_key].ttl_seconds
    assert ttl is not None
    assert LONG_TTL - 5 < ttl <= LONG_TTL
    lease = stored[target.key("users", "~lease:abc")]
    assert lease.generation is None  # a token, not an entry
    assert lease.ttl_seconds is not None
    assert 0 < lease.ttl_seconds <= 30
    # Looking changed nothing: the intent still stands, so a fill is still refused.
    again = await b.describe(gen(target), target.key("users", "*"))
    assert again.generation == moved
    assert len(again.intent_seconds_left) == 1
    assert not await b.fill(gen(target), current_key, moved, b"rows", LONG_TTL)


async def test_an_expired_intent_is_reported_not_removed(target: Target) -> None:
    b = target.backend
    assert isinstance(b, DescribableBackend)
    await b.begin_write(gen(target), "died", 0.05)
    await target.elapse(0.2)
    view = await b.describe(gen(target), target.key("users", "*"))
    assert len(view.intent_seconds_left) == 1
    assert view.intent_seconds_left[0] <= 0
    # Still there for the next fill, which completes the dead writer's invalidation.
    assert len((await b.describe(gen(target), target.key("users", "*"))).intent_seconds_left) == 1
