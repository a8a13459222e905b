"""Popular-query counting asks for a sync per table: another table's waiting uses must not
make every read of this one pay a sync (two backend round trips). No server: the in-process
backend."""

from baserepo import CacheConfig
from baserepo.cache._keys import KeySpace


def test_a_table_asks_for_a_sync_on_its_own_uses_only() -> None:
    tracker = CacheConfig(usage_flush_every=3).runtime.usage
    assert not tracker.record("a", "list", "d1", None)
    assert not tracker.record("a", "list", "d1", None)
    # Two uses of "a" wait; "b" has none: its reads must not ask for a sync.
    assert [tracker.record("b", "list", "d2", None) for _ in range(3)] == [False, False, True]
    assert tracker.record("a", "list", "d1", None)  # "a"'s third use


async def test_a_sync_clears_its_own_table_only() -> None:
    config = CacheConfig(usage_flush_every=2)
    tracker = config.runtime.usage
    tracker.record("a", "list", "d1", None)
    tracker.record("b", "list", "d2", None)
    await tracker.sync("b", KeySpace("t", "b"), config.backend, 100)
    assert tracker.record("a", "list", "d1", None)  # "a" still had its first use waiting
    assert not tracker.record("b", "list", "d2", None)
