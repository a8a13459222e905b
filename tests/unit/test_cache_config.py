"""CacheConfig refuses settings that would quietly weaken the cache's guarantees."""

from __future__ import annotations

from typing import Any

import pytest

from baserepo import CacheConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"wait_replicas": 1, "wait_timeout": 0.25, "operation_timeout": 0.25}, "wait_timeout"),
        ({"wait_replicas": -1}, "must not be negative"),
        ({"bump_retry_seconds": -0.5}, "must not be negative"),
        ({"write_intent_seconds": 0}, "write_intent_seconds"),
        ({"write_intent_seconds": -1.0}, "write_intent_seconds"),
    ],
)
def test_settings_that_would_break_a_guarantee_are_refused(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CacheConfig(**settings)


def test_the_defaults_and_sensible_settings_are_accepted() -> None:
    config = CacheConfig(bump_retry_seconds=10.0, write_intent_seconds=2.0)
    assert (config.bump_retry_seconds, config.write_intent_seconds) == (10.0, 2.0)
    assert CacheConfig().write_intent_seconds == 5.0
