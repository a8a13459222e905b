"""A Redis client from a URL, for the cache's ``redis_client=`` (``CacheConfig``).

redis-py itself is imported by one module of baserepo, the Redis backend (``_redis.py``); this
one takes the client class from there, so that rule holds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from .._dependencies import needs

__all__ = ["connect_redis", "redact", "unavailable"]


async def connect_redis(
    url: str, *, connect_timeout: float = 5.0, socket_timeout: float | None = None
) -> Any:
    """A ``redis.asyncio.Redis`` client for ``url``, checked with a PING.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` or
            ``unix://...``, as ``redis.asyncio.Redis.from_url`` takes it.
        connect_timeout: seconds to wait for the connection.
        socket_timeout: seconds to wait for any reply (None: no limit).

    Raises:
        MissingDependencyError: redis-py is not installed (``pip install 'baserepo[redis]'``).
        ConnectionError: the server does not answer; the message names the URL without its
            password.
    """
    with needs("a Redis URL"):
        from . import _redis
    # redis-py's client class, as the backend module imported it (it is not in its __all__).
    redis_class = _redis.Redis  # type: ignore[attr-defined]
    client = redis_class.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout
    )
    try:
        await client.ping()
    except Exception as error:
        await client.aclose()
        raise ConnectionError(f"Redis unreachable at {redact(url)}: {error}") from error
    return client


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the Redis server could not be reached, went away or did not
    answer in time (rather than refusing a command): what ``connect_redis`` raises, or
    redis-py's connection and timeout errors."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    try:
        from . import _redis
    except ImportError:
        return False
    return isinstance(error, _redis.UNAVAILABLE)


def redact(url: str) -> str:
    """``url`` (a database's or Redis's) with its password, if any, replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return "<unparsable URL>"
