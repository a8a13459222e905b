"""What one cache read costs before any of baserepo's own work: the MGET a cached read sends
(generation, entry of ~10 KB, lease), three ways, mean of --calls after a warm-up.

    .venv/bin/python bench/probes/redis_round_trip.py [--url redis://127.0.0.1:6379/0]

``execute_command`` is what the cache backend calls; ``connection`` skips redis-py's pool and
command layer; ``asyncio streams`` writes the RESP bytes itself. The spread between them is
redis-py's own cost; what all three share is the round trip. Printed figures are quoted in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from redis.asyncio import Redis

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

KEYS = ("baserepo-rtt:g", "baserepo-rtt:k", "baserepo-rtt:l")
MGET = b"*4\r\n$4\r\nMGET\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(k), k.encode()) for k in KEYS)
PAYLOAD = b"1:" + b"x" * 10_000


async def mean_us(calls: int, call: Callable[[], Awaitable[Any]]) -> float:
    for _ in range(200):
        await call()
    start = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - start) / calls * 1e6


async def main(url: str, calls: int) -> None:
    client = Redis.from_url(url)
    await client.set(KEYS[0], b"1")
    await client.set(KEYS[1], PAYLOAD)
    connection = await client.connection_pool.get_connection("MGET")
    address = urlparse(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port or 6379)

    async def by_command() -> Any:
        return await client.execute_command("MGET", *KEYS, NEVER_DECODE=True)

    async def by_connection() -> Any:
        await connection.send_command("MGET", *KEYS)
        return await connection.read_response(disable_decoding=True)

    async def by_streams() -> bytes:
        writer.write(MGET)
        # *3, $1 1, $10002 payload, $-1: read until the nil lease that ends the reply.
        return await reader.readuntil(b"$-1\r\n")

    try:
        for name, call in (
            ("execute_command", by_command),
            ("connection", by_connection),
            ("asyncio streams", by_streams),
        ):
            print(f"{name:<16} {await mean_us(calls, call):7.1f} us per MGET")
    finally:
        await client.connection_pool.release(connection)
        writer.close()
        await client.delete(*KEYS)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=3_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url, arguments.calls))
