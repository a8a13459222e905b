"""A Redis Sentinel setup for tests: a master, a replica (``--replicaof``) and three sentinels
(``redis-server <conf> --sentinel``, quorum 2) on spare loopback ports, started for one test and
stopped afterwards.

Fixture (imported by ``tests/conftest.py``): ``redis_sentinel`` gives a ``SentinelSet``. Its
sentinels notice a dead master after ``DOWN_AFTER_MS`` and promote the replica; tests kill the
master (SIGKILL), pause the replica (SIGSTOP) and wait for the promotion. Nothing is skipped: a
setup that will not come up fails the test, saying why.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.redis_servers import RedisServer, free_port, start_redis_server

__all__ = ["DOWN_AFTER_MS", "SERVICE", "SentinelSet", "redis_sentinel", "start_sentinel_set"]

SERVICE = "mymaster"
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 3000
READY_TIMEOUT_SECONDS = 30.0
PROMOTION_TIMEOUT_SECONDS = 30.0


def command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command over a raw socket, the reply as text (inline protocol, enough for tests)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(" ".join(args).encode() + b"\r\n")
        sock.settimeout(timeout)
        reply = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            reply += chunk
            sock.settimeout(0.05)  # the rest of a reply follows at once
    return reply.decode(errors="replace")


@dataclass
class Sentinel:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] = field(init=False)

    def start(self, master_port: int) -> None:
        conf = self.workdir / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
            f"dir {self.workdir}\nlogfile {self.workdir / f'sentinel-{self.port}.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.process = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdin=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class SentinelSet:
    """The servers of one Sentinel setup; ``master``/``replica`` as started (the replica is
    the master after ``wait_for_promotion``)."""

    master: RedisServer
    replica: RedisServer
    sentinels: list[Sentinel]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """What ``redis.asyncio.sentinel.Sentinel(...)`` is given."""
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    def master_port(self) -> int | None:
        """The master's port as the sentinels agree on it (None until a majority does)."""
        ports = []
        for sentinel in self.sentinels:
            reply = command(sentinel.port, "SENTINEL", "get-master-addr-by-name", SERVICE)
            numbers = [line for line in reply.split("\r\n") if line.isdigit()]
            ports.append(int(numbers[-1]) if numbers else None)
        for port in ports:
            if port is not None and ports.count(port) >= 2:
                return port
        return None

    def ready(self) -> str | None:
        """None once every sentinel knows the other two and the replica, and the replica's
        link is up; else what is missing."""
        link = command(self.replica.port, "INFO", "replication")
        if "master_link_status:up" not in link:
            return f"replica link not up: {link!r}"
        for sentinel in self.sentinels:
            reply = command(sentinel.port, "SENTINEL", "MASTER", SERVICE).split("\r\n")
            fields = dict(zip(reply[2::4], reply[4::4], strict=False))
            if fields.get("num-other-sentinels") != "2" or fields.get("num-slaves") != "1":
                return f"sentinel {sentinel.port}: {fields}"
        return None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while (missing := self.ready()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Sentinel setup not ready in {READY_TIMEOUT_SECONDS}s: {missing}"
                )
            time.sleep(0.1)

    def wait_for_promotion(self) -> float:
        """Until the sentinels name the replica as master and it says so (ROLE); returns the
        seconds waited."""
        started = time.monotonic()
        while True:
            if self.master_port() == self.replica.port:
                role = command(self.replica.port, "ROLE")
                if "master" in role.split("\r\n")[:3]:
                    return time.monotonic() - started
            if time.monotonic() - started > PROMOTION_TIMEOUT_SECONDS:
                raise RuntimeError("the replica was not promoted in time")
            time.sleep(0.02)

    async def promoted(self) -> float:
        return await asyncio.to_thread(self.wait_for_promotion)

    def cut_replication(self) -> None:
        """Stop the replica (SIGSTOP) and drop its link on the master, so what the master
        acknowledges from now on never reaches the replica."""
        self.replica.pause()
        reply = command(self.master.port, "CLIENT", "KILL", "TYPE", "replica")
        if not reply.startswith(":1"):
            raise RuntimeError(f"CLIENT KILL TYPE replica: {reply!r}")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()


def start_sentinel_set(workdir: Path) -> SentinelSet:
    master = start_redis_server(workdir / "master" if _mkdir(workdir / "master") else workdir)
    started: list[Sentinel] = []
    replica: RedisServer | None = None
    try:
        replica_dir = workdir / "replica"
        _mkdir(replica_dir)
        replica = start_redis_server(replica_dir, "--replicaof", "127.0.0.1", str(master.port))
        for _ in range(3):
            sentinel = Sentinel(free_port(), workdir)
            sentinel.start(master.port)
            started.append(sentinel)
        setup = SentinelSet(master, replica, started)
        setup.wait_ready()
        return setup
    except BaseException:
        for sentinel in started:
            sentinel.stop()
        if replica is not None:
            replica.stop()
        master.stop()
        raise


def _mkdir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return True


@pytest.fixture
def redis_sentinel(_redis_tools: None, tmp_path: Path) -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels of this test alone; stopped afterwards."""
    try:
        setup = start_sentinel_set(tmp_path)
    except RuntimeError as exc:
        logs = "\n".join(
            f"{log.name}: {log.read_text()[-800:]}" for log in sorted(tmp_path.rglob("*.log"))
        )
        pytest.fail(f"could not start a Redis Sentinel setup: {exc}\n{logs}", pytrace=False)
    try:
        yield setup
    finally:
        setup.stop()
