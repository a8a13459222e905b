"""``baserepo.cache.connect``: which errors mean Redis is unavailable (``baserepo cache`` exits
3 on them, 1 on others), and URLs shown without their password."""

import pytest
from redis import exceptions as redis_errors

from baserepo.cache.connect import redact, unavailable


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ConnectionError("Connection closed by server."),
        redis_errors.TimeoutError("Timeout reading from socket"),
        redis_errors.AuthenticationError("invalid password"),
        ConnectionError("Redis unreachable at redis://127.0.0.1:1/0"),
        TimeoutError(),
    ],
)
def test_connection_and_timeout_errors_mean_unavailable(error: Exception) -> None:
    assert unavailable(error)


@pytest.mark.parametrize(
    "error",
    [redis_errors.ResponseError("WRONGTYPE"), redis_errors.NoScriptError(), ValueError("x")],
)
def test_a_refused_command_is_not_unavailability(error: Exception) -> None:
    assert not unavailable(error)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("postgresql+asyncpg://app:hunter2@db/app", "postgresql+asyncpg://app:***@db/app"),
        ("redis://10.0.0.5:port/0", "<unparsable URL>"),  # raised ValueError before
        ("not a url", "<unparsable URL>"),
    ],
)
def test_redact_hides_the_password_and_never_raises(url: str, shown: str) -> None:
    assert redact(url) == shown
