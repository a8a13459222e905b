"""What the Redis backend needs to know which server it is talking to, without importing redis.

Invariant: a client that reconnected may be talking to another server (a restarted one, a
promoted replica) with no error on the way, so the Redis backend is told of every connect of
its client's pool (``watch_connections``) and reads the server's identity again before it
judges a reply by it. ``UnreplicatedBump``: a bump fewer replicas acknowledged than asked for
(``WAIT``), which therefore does not count as an invalidation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["UnreplicatedBump", "watch_connections"]


class UnreplicatedBump(RuntimeError):
    """Fewer replicas than ``wait_replicas`` acknowledged a bump in time: a failover may
    lose it, so it does not count as an invalidation (the caller retries, then distrusts)."""


def watch_connections(client: Any, on_connect: Callable[[object], None]) -> None:
    """Call ``on_connect`` whenever a connection of ``client``'s pool connects, the first
    time or again (redis-py reconnects by itself, and a Sentinel pool asks the sentinels for
    the master each time). Uses the connections' own ``register_connect_callback``, on the
    connections the pool has and on every one it makes from now on. ``on_connect`` must be
    a bound method (redis-py keeps it as a weak reference)."""
    pool = client.connection_pool
    make_connection = pool.make_connection

    def make_watched_connection() -> Any:
        connection = make_connection()
        connection.register_connect_callback(on_connect)
        return connection

    pool.make_connection = make_watched_connection
    existing = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    if client.connection is not None:
        existing.append(client.connection)
    for connection in existing:
        connection.register_connect_callback(on_connect)
