"""The Redis backend, for a standalone ``redis.asyncio.Redis`` or a ``redis.asyncio.RedisCluster``.

The only module of baserepo that imports ``redis``. Semantics are those of ``MemoryBackend``
(the contract tests in ``tests/contract`` run both): values are stored as
sealed envelopes (``_envelope``) and read as None unless their generation is the current one.

Every operation that must be atomic is one command or one Lua script over keys of one model,
which share a hash tag (``{users}``), so on a cluster each lands on one slot. The only
multi-node operation is ``delete_pattern``, which scans every primary.

The client may have ``decode_responses`` on or off: commands that return payloads ask redis-py
not to decode them, and member names and keys are accepted as ``str`` or ``bytes``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Protocol, cast

from redis.asyncio import Redis, RedisCluster
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._envelope import open_envelope, seal, sealed_generation
from ._identity import UnreplicatedBump, watch_connections
from ._protocol import BackendView, StoredKey, warn_try_lock
from ._scripts import SCRIPTS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from redis.asyncio.cluster import ClusterNode
    from redis.commands.core import AsyncScript

    from ._protocol import Entry

__all__ = ["UNAVAILABLE", "RedisBackend"]

UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
"""redis-py's errors for a server that could not be reached, went away or did not answer."""

_SCAN_COUNT = 500
_UNLINK_CHUNK = 500
_METADATA_MARK = ":~"
# An envelope's generation is a decimal number of microseconds (16-17 digits): its first
# bytes are enough to read it, without fetching the payload.
_ENVELOPE_HEAD = 32


class _Executes(Protocol):
    # redis-py leaves the standalone client's execute_command unannotated; this is the part
    # of it used here, with its option to return bulk strings undecoded.
    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]: ...


class RedisBackend:
    """``CacheBackend`` on Redis or Redis Cluster.

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``. It stays the
            caller's: ``close()`` does not close it.
        identity_check_seconds: how often the server's run_id is read again (one ``INFO
            server`` per node), also after any failed read and, on a standalone or Sentinel
            client, after any connection of the client's pool (re)connected. A generation
            moved under another server run reads as missing (0), so the reader bumps before
            serving or filling.
        wait_replicas / wait_timeout: after each bump, ``WAIT wait_replicas wait_timeout``
            on the same connection; a bump fewer replicas acknowledged raises
            ``UnreplicatedBump`` (it may be lost in a failover). 0 (the default): no WAIT.
        clock: monotonic seconds (injected by tests).

    Callers pass keys of one model with a shared hash tag; ``read_many``, ``fill``,
    ``incr_usage`` and ``top_usage`` rely on that on a cluster (one slot per call).
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        identity_check_seconds: float = 1.0,
        wait_replicas: int = 0,
        wait_timeout: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(client, Redis | RedisCluster):
            raise TypeError(
                "RedisBackend needs a redis.asyncio.Redis or redis.asyncio.RedisCluster, "
                f"not {type(client).__module__}.{type(client).__qualname__}"
            )
        if wait_replicas > 0 and isinstance(client, RedisCluster):
            raise TypeError("wait_replicas needs a standalone or Sentinel client, not a cluster")
        self._client = client
        self._execute = cast("_Executes", client).execute_command
        if isinstance(client, RedisCluster):
            self._execute = self._execute_on_cluster
        self._cluster_ready = False
        self._cluster_lock: asyncio.Lock | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Server identity: the run_id of each node (standalone: ""), and when it was read.
        # Re-read every identity_check_seconds and after any failed read.
        self._identity_check_seconds = identity_check_seconds
        self._clock = clock
        self._servers: dict[str, tuple[str, float]] = {}
        # The highest generation this backend has seen per generation key: one lower than
        # that means the server went back in time (restored snapshot, failover).
        self._highest: dict[str, int] = {}
        # Connections (re)made by the client's pool, counted: a reconnect may reach another
        # server (a promoted replica, a restarted one) without any error reaching us, so
        # the identity is forgotten at once and a read that saw one judges its reply only
        # after reading the identity again. No time window (see _identity.watch_connections).
        self._connects = 0
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        if isinstance(client, Redis):
            watch_connections(client, self._connected)

    # -- entries ---------------------------------------------------------------------------

    async def read(self, generation_key: str, key: str) -> Entry:
        generation, entries = await self.read_many(generation_key, (key,))
        return generation, entries[0]

    async def read_many(
        self, generation_key: str, keys: Sequence[str]
    ) -> tuple[int, list[bytes | None]]:
        # One MGET: the generation, the server run it was moved under, and the entries come
        # from the same instant, so an entry is judged against the generation that was
        # current when it was read.
        values = await self._read(generation_key, keys)
        generation = self._current(generation_key, *values[:4])
        return generation, [open_envelope(stored, generation) for stored in values[4:]]

    async def fill(
        self, generation_key: str, key: str, generation: int, payload: bytes, ttl_seconds: float
    ) -> bool:
        stored = seal(generation, payload)
        result = await self._run(
            "fill",
            (generation_key, key, _intents_key(generation_key)),
            (str(generation), stored, _milliseconds(ttl_seconds)),
        )
        return bool(result)

    async def read_with_lease(
        self, generation_key: str, key: str, lease_key: str
    ) -> tuple[int, bytes | None, bool]:
        values = await self._read(generation_key, (key, lease_key))
        generation = self._current(generation_key, *values[:4])
        return generation, open_envelope(values[4], generation), values[5] is not None

    async def _read(self, generation_key: str, keys: Sequence[str]) -> list[Any]:
        """[highest generation seen before the read, server run_id, stored generation, the
        run it was moved under, *values]; forgets the server identity on failure (a failed
        call may be the server going away)."""
        # Only what was seen before the read was sent: a bump of ours that lands while the
        # read is on its way may legitimately be newer than what the read finds.
        seen = self._highest.get(generation_key, 0)
        connects = self._connects
        try:
            server = await self._server_identity(generation_key)
            values = await self._execute(
                "MGET", generation_key, _server_key(generation_key), *keys, **{NEVER_DECODE: True}
            )
            if self._connects != connects:
                # A connection was made while the identity or the MGET was out: the MGET's
                # reply may come from another server than that identity. Read it again (the
                # connect forgot it); a server that changed since reads as another run.
                server = await self._server_identity(generation_key)
        except BaseException:
            self._servers.clear()
            raise
        return [seen, server, *values]

    def _current(
        self,
        generation_key: str,
        seen: int,
        server: str,
        stored: bytes | None,
        moved_under: bytes | None,
    ) -> int:
        """The stored generation, or 0 (missing: the reader bumps before using the cache)
        when it cannot be trusted: moved under another server run (a restart from a snapshot
        or AOF, a failover: entries of that generation may predate a write whose bump the
        restored data lost), or lower than one this backend has seen."""
        if stored is None:
            return 0
        generation = int(stored)
        if moved_under is None or _text(moved_under) != server:
            return 0
        if generation < seen:
            return 0
        self._highest[generation_key] = max(generation, self._highest.get(generation_key, 0))
        return generation

    async def _server_identity(self, generation_key: str) -> str:
        """The run_id of the node holding ``generation_key``, read again when due."""
        node: ClusterNode | None = None
        name = ""
        if isinstance(self._client, RedisCluster):
            await self._ensure_cluster()
            node = self._client.get_node_from_key(generation_key)
            name = node.name if node is not None else ""
        known = self._servers.get(name)
        now = self._clock()
        if known is not None and now - known[1] < self._identity_check_seconds:
            return known[0]
        target = {} if node is None else {"target_nodes": node}
        connects = self._connects
        run_id = _run_id(await self._execute("INFO", "server", **target))
        if self._connects == connects:  # else the next command may reach another server
            self._servers[name] = (run_id, now)
        return run_id

    async def fill_and_release(
        self,
        generation_key: str,
        key: str,
        generation: int,
        payload: bytes,
        ttl_seconds: float,
        lease_key: str,
        token: str,
    ) -> bool:
        stored = seal(generation, payload)
        result = await self._run(
            "fill_and_release",
            (generation_key, key, lease_key, _intents_key(generation_key)),
            (str(generation), stored, _milliseconds(ttl_seconds), token),
        )
        return bool(result)

    async def bump(self, generation_key: str) -> int:
        floor = self._highest.get(generation_key, 0)
        keys = (generation_key, _server_key(generation_key))
        return await self._move("bump", generation_key, keys, (str(floor),))

    async def begin_write(self, generation_key: str, token: str, seconds: float) -> int:
        # The bump's keys and floor, then the intents set, token and duration (last, where
        # the intent part of the script reads them).
        floor = self._highest.get(generation_key, 0)
        keys = (generation_key, _server_key(generation_key), _intents_key(generation_key))
        args = (str(floor), token, _milliseconds(seconds))
        return await self._move("begin_write", generation_key, keys, args)

    async def end_write(self, generation_key: str, token: str) -> int:
        floor = self._highest.get(generation_key, 0)
        keys = (generation_key, _server_key(generation_key), _intents_key(generation_key))
        return await self._move("end_write", generation_key, keys, (str(floor), token))

    async def _move(
        self, script: str, generation_key: str, keys: Sequence[str], args: Sequence[str | int]
    ) -> int:
        """Run a script that moves the generation (a bump, alone or with a write intent),
        acknowledged by ``wait_replicas`` replicas when asked; note its reply."""
        connects = self._connects
        if self._wait_replicas > 0:
            text, server = await self._run_and_wait(script, keys, args)
        else:
            text, server = await self._run(script, keys, args)
        return self._bumped(generation_key, text, server, connects)

    def _bumped(self, generation_key: str, text: bytes, server: bytes, connects: int) -> int:
        """Note a bump's reply (new generation, server run); return the generation."""
        generation = int(text)
        self._highest[generation_key] = max(generation, self._highest.get(generation_key, 0))
        # The bump ran on the node that holds the key: its run_id is known as of now, unless
        # a connection was made meanwhile (the next command may reach another server).
        name = ""
        if isinstance(self._client, RedisCluster):
            node = self._client.get_node_from_key(generation_key)
            name = node.name if node is not None else ""
        if self._connects == connects:
            self._servers[name] = (_text(server), self._clock())
        return generation

    async def _run_and_wait(
        self, script: str, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """A script, then ``WAIT`` on the same connection (a pipeline holds one): the move
        counts only once ``wait_replicas`` replicas have it."""
        client = cast("Redis", self._client)
        pipe = client.pipeline(transaction=False)
        source = SCRIPTS[script]
        pipe.execute_command("EVAL", source, len(keys), *keys, *args, **{NEVER_DECODE: True})
        pipe.execute_command("WAIT", self._wait_replicas, _milliseconds(self._wait_timeout))
        bumped, acknowledged = await pipe.execute()
        if int(acknowledged) < self._wait_replicas:
            raise UnreplicatedBump(
                f"{acknowledged} of {self._wait_replicas} replicas acknowledged the bump of "
                f"{keys[0]} within {self._wait_timeout}s"
            )
        return bumped

    def _connected(self, connection: object) -> None:
        """A connection of the client's pool (re)connected: forget the server identity."""
        self._connects += 1
        self._servers.clear()

    async def delete_pattern(self, pattern: str) -> int:
        if isinstance(self._client, RedisCluster):
            await self._client.initialize()  # no-op once the slot map is known
            # Each primary owns a disjoint share of the keys and has its own SCAN cursor.
            nodes = self._client.get_primaries()
            try:
                # A TaskGroup, not gather: if one node fails the others are cancelled rather
                # than left running after the call has returned.
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._delete_on(pattern, node)) for node in nodes]
            except ExceptionGroup as failures:
                # Callers handle the client's own errors, as from every other method.
                raise failures.exceptions[0] from None
            return sum(task.result() for task in tasks)
        return await self._delete_on(pattern, None)

    async def _delete_on(self, pattern: str, node: ClusterNode | None) -> int:
        target = {} if node is None else {"target_nodes": node}
        deleted = 0
        cursor = 0
        while True:
            reply = await self._execute(
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT, **target
            )
            cursor, keys = _scan_reply(reply)
            doomed = [k for k in keys if not _is_metadata(k)]
            # UNLINK frees memory off the main thread; chunks keep each command short. On a
            # cluster RedisCluster.unlink splits a chunk by slot into one pipelined round trip.
            for start in range(0, len(doomed), _UNLINK_CHUNK):
                # Counting UNLINK's replies, not SCAN's keys: SCAN may return a key twice, and
                # a key can expire between the two.
                deleted += await self._client.unlink(*doomed[start : start + _UNLINK_CHUNK])
            if cursor == 0:
                return deleted

    # -- inspection (baserepo cache stats) ---------------------------------------------

    async def describe(self, generation_key: str, pattern: str) -> BackendView:
        node: ClusterNode | None = None
        if isinstance(self._client, RedisCluster):
            await self._ensure_cluster()
            # Every key of a model shares its hash tag: one node holds them all.
            node = self._client.get_node_from_key(generation_key)
        target = {} if node is None else {"target_nodes": node}
        server = _run_id(await self._execute("INFO", "server", **target))
        stored, moved_under = await self._execute(
            "MGET", generation_key, _server_key(generation_key), **{NEVER_DECODE: True}
        )
        intents = cast(
            "list[tuple[Any, float]]",
            await self._client.zrange(_intents_key(generation_key), 0, -1, withscores=True),
        )
        now_ms = _milliseconds_of(await self._execute("TIME", **target))
        keys: list[StoredKey] = []
        cursor = 0
        while True:
            reply = await self._execute(
                "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT, **target
            )
            cursor, found = _scan_reply(reply)
            keys += await self._stored_keys([_text(key) for key in dict.fromkeys(found)])
            if cursor == 0:
                break
        return BackendView(
            server=server,
            generation=None if stored is None else int(stored),
            moved_under=None if moved_under is None else _text(moved_under),
            intent_seconds_left=tuple((float(score) - now_ms) / 1000 for _, score in intents),
            keys=tuple(keys),
        )

    async def _stored_keys(self, keys: list[str]) -> list[StoredKey]:
        if not keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key)
            pipe.pttl(key)
            # A sorted set or hash (usage, intents) answers WRONGTYPE: not an envelope.
            pipe.getrange(key, 0, _ENVELOPE_HEAD - 1)
        replies = await pipe.execute(raise_on_error=False)
        stored = []
        for index, key in enumerate(keys):
            size, ttl_ms, head = replies[3 * index : 3 * index + 3]
            if size is None or isinstance(size, Exception):
                continue  # expired or deleted since the SCAN
            stored.append(
                StoredKey(
                    key,
                    int(size),
                    None if isinstance(head, Exception) else sealed_generation(_bytes(head)),
                    int(ttl_ms) / 1000 if isinstance(ttl_ms, int) and ttl_ms >= 0 else None,
                )
            )
        return stored

    # -- leases (fill leases and warm locks) --------------------------------------------

    async def acquire_lease(self, key: str, token: str, ttl_seconds: float) -> bool:
        return bool(await self._client.set(key, token, nx=True, px=_milliseconds(ttl_seconds)))

    async def release_lease(self, key: str, token: str) -> None:
        await self._run("release", (key,), (token,))

    async def try_lock(self, key: str, token: str, ttl_seconds: float) -> bool:
        """Deprecated: ``acquire_lease`` (a warm lock is a lease on one interval's warm)."""
        warn_try_lock()
        return await self.acquire_lease(key, token, ttl_seconds)

    # -- usage -----------------------------------------------------------------------------

    async def incr_usage(
        self,
        usage_key: str,
        specs_key: str,
        counts: dict[str, float],
        specs: dict[str, bytes],
        max_tracked: int,
    ) -> None:
        args: list[str | bytes] = [str(max_tracked), str(len(counts))]
        for member, count in counts.items():
            args += (member, repr(float(count)))
        for member, spec in specs.items():
            args += (member, spec)
        await self._run("incr_usage", (usage_key, specs_key), args)

    async def top_usage(
        self, usage_key: str, specs_key: str, limit: int, min_score: float
    ) -> list[tuple[str, float, bytes | None]]:
        if limit <= 0:
            return []
        members, scores, specs = await self._run(
            "top_usage", (usage_key, specs_key), (str(limit), repr(float(min_score)))
        )
        ranked = [
            (_text(member), float(score), spec)
            for member, score, spec in zip(members, scores, specs, strict=True)
        ]
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked

    async def decay_usage(self, usage_key: str, factor: float) -> None:
        # A union of one set with itself, weighted: one command, one key, no round trip per
        # member, and atomic.
        await self._client.zunionstore(usage_key, {usage_key: factor})

    # -- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> bool:
        return bool(await self._client.ping())

    async def close(self) -> None:
        """Forget the registered scripts. The client belongs to the caller, who may share it
        with other code, so it is left open; the backend still works if used again."""
        self._scripts.clear()

    async def _execute_on_cluster(self, *args: Any, **options: Any) -> Any:
        # A RedisCluster that has not loaded its slot map yet drops some commands of a
        # concurrent burst (redis-py 8.1: "'NoneType' object has no attribute 'writelines'");
        # load it once, under a lock, before the first command.
        await self._ensure_cluster()
        return await cast("_Executes", self._client).execute_command(*args, **options)

    async def _ensure_cluster(self) -> None:
        if not self._cluster_ready:
            if self._cluster_lock is None:
                self._cluster_lock = asyncio.Lock()
            async with self._cluster_lock:
                if not self._cluster_ready:
                    await cast("RedisCluster", self._client).initialize()
                    self._cluster_ready = True

    # -- scripts ---------------------------------------------------------------------------

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        """EVALSHA a registered script, loading it first where the server lacks it (restart,
        SCRIPT FLUSH, a cluster node that has not seen it yet)."""
        script = self._scripts.get(name)
        if script is None:
            # register_script only hashes the text; nothing is sent until the first call.
            script = self._scripts[name] = self._client.register_script(SCRIPTS[name])
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        # AsyncScript.__call__ would decode the specs top_usage returns on a client with
        # decode_responses=True, so scripts go through execute_command, undecoded.
        try:
            return await self._execute(*command, **{NEVER_DECODE: True})
        except NoScriptError:
            # On a cluster SCRIPT LOAD goes to every primary, so one retry suffices.
            await self._client.script_load(script.script)
            return await self._execute(*command, **{NEVER_DECODE: True})


def _server_key(generation_key: str) -> str:
    # Same hash tag as the generation, and metadata (":~"): never deleted by a pattern.
    return f"{generation_key}:server"


def _intents_key(generation_key: str) -> str:
    # The model's write intents (_intent_scripts); same hash tag, metadata too.
    return f"{generation_key}:intents"


def _run_id(info: Any) -> str:
    # INFO as parsed by redis-py: a dict, or on a cluster possibly {node name: dict}.
    if isinstance(info, dict) and "run_id" not in info and len(info) == 1:
        (info,) = info.values()
    if isinstance(info, dict):
        return _text(info["run_id"])
    for line in _text(info).splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    raise ValueError("INFO server gave no run_id")


def _milliseconds_of(server_time: Any) -> float:
    # TIME as parsed by redis-py: (seconds, microseconds), or on a cluster {node: that}.
    if isinstance(server_time, dict):
        (server_time,) = server_time.values()
    seconds, microseconds = server_time
    return int(seconds) * 1000 + int(microseconds) / 1000


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _milliseconds(seconds: float) -> int:
    # PX must be positive; a zero TTL becomes the shortest one Redis has.
    return max(1, round(seconds * 1000))


def _scan_reply(reply: Any) -> tuple[int, list[bytes | str]]:
    cursor, keys = reply
    # RedisCluster reports the cursor per node even when one node was targeted.
    if isinstance(cursor, dict):
        (cursor,) = cursor.values()
    return int(cursor), list(keys)


def _is_metadata(key: bytes | str) -> bool:
    return _METADATA_MARK in _text(key)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
