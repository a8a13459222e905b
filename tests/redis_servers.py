"""Redis servers for tests: the shared standalone Redis, a three-master Redis Cluster the test
session starts on spare loopback ports, and throwaway servers a single test may pause, kill and
restart.

Fixtures (imported by ``tests/conftest.py``, so every test directory can use them):

- ``redis_client``: a client of the shared Redis at 127.0.0.1:6379 (``BASEREPO_TEST_REDIS_URL``
  overrides). Other runs use that server too: work under a key prefix of your own and delete
  your keys afterwards; never flush.
- ``redis_cluster``: a ``RedisCluster`` client of a three-master cluster started once per session
  (``redis-server --cluster-enabled yes ...`` then ``redis-cli --cluster create``), stopped at the
  end.
- ``spare_redis``: a standalone ``redis-server`` on a spare port for one test, which may pause
  (SIGSTOP), resume, kill and restart it (``RedisServer``).

Nothing is skipped: a Redis that cannot be reached or a cluster that will not form fails the
tests that need it, saying why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "MAX_PORT",
    "REDIS_URL",
    "START_TIMEOUT_SECONDS",
    "RedisServer",
    "free_port",
    "redis_client",
    "redis_cluster",
    "spare_redis",
    "start_cluster",
    "start_redis_server",
    "wait_for_cluster",
]

REDIS_URL = os.environ.get("BASEREPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT_SECONDS = 10.0
CLUSTER_BUS_OFFSET = 10_000  # Redis Cluster's bus listens on port + 10000
MAX_PORT = 55_000  # so that port + 10000 is still a valid port


# -- redis-server processes ----------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port nothing listens on (and, ``with_bus``, whose cluster bus port is free)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port >= MAX_PORT:
            continue
        if not with_bus or _port_is_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError(f"no free loopback port below {MAX_PORT} (with bus port: {with_bus})")


def _serving_pid(port: int) -> int | None:
    """The pid of the redis-server answering on ``port``, or None if none answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    line = reply.split(b"process_id:", 1)[1].split(b"\r\n", 1)[0]
    return int(line)


@dataclass
class RedisServer:
    """A ``redis-server`` this test session started; unpacks as ``(port, process)``.

    ``process`` is the current ``subprocess.Popen``; ``restart()`` replaces it with a new one on
    the same port (and an empty dataset: nothing is persisted). ``snapshot()`` saves the dataset
    (``SAVE``) and keeps a copy of the RDB file; ``restart_from(snapshot)`` kills the server and
    starts it again on that copy, as a restore from an old backup or snapshot does.
    """

    port: int
    workdir: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] = field(init=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.port, self.process))

    @property
    def log(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log),
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        # Waits for this very process: a server another run started on the port meanwhile
        # would answer PING too.
        while _serving_pid(self.port) != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log.read_text()[-2000:] if self.log.exists() else "(no log)"
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")
            time.sleep(0.01)

    def pause(self) -> None:
        """SIGSTOP: the port stays open, but nothing answers (a hung server)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash: connections drop, the port closes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=START_TIMEOUT_SECONDS)

    @property
    def rdb(self) -> Path:
        """Where the server saves and loads its dataset (``--dir``, default ``dump.rdb``)."""
        return self.workdir / "dump.rdb"

    def restart(self) -> None:
        """Kill, and start again empty (even after a ``snapshot()``)."""
        self.kill()
        self.rdb.unlink(missing_ok=True)
        self.start()

    def snapshot(self) -> Path:
        """``SAVE`` the dataset now; returns a copy of the RDB file that later saves leave."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"SAVE\r\n")
            reply = sock.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"SAVE on port {self.port} failed: {reply!r}")
        saved = self.workdir / f"snapshot-{time.monotonic_ns()}.rdb"
        shutil.copyfile(self.rdb, saved)
        return saved

    def restart_from(self, snapshot: Path) -> None:
        """Kill (SIGKILL, no save), put ``snapshot`` in place, start: the dataset is the
        snapshot's, and the server a new run (a new ``run_id``)."""
        self.kill()
        shutil.copyfile(snapshot, self.rdb)
        self.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis_server(workdir: Path, *extra_args: str, with_bus: bool = False) -> RedisServer:
    """Start a ``redis-server`` on a spare port, retrying on another port if it was taken
    between the check and the start."""
    error: Exception | None = None
    for _ in range(5):
        server = RedisServer(free_port(with_bus=with_bus), workdir, extra_args)
        try:
            server.start()
        except RuntimeError as exc:
            error = exc
            continue
        return server
    raise RuntimeError(f"could not start redis-server: {error}")


def _cluster_info(port: int) -> dict[str, str]:
    out = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "CLUSTER", "INFO"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout
    return dict(line.split(":", 1) for line in out.split() if ":" in line)


def wait_for_cluster(servers: list[RedisServer], timeout: float = 30.0) -> None:
    """Until every node reports cluster_state:ok and knows all the others."""
    deadline = time.monotonic() + timeout
    while True:
        infos = [_cluster_info(server.port) for server in servers]
        ready = (
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(len(servers))
            for info in infos
        )
        if all(ready):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster did not reach cluster_state:ok: {infos}")
        time.sleep(0.05)


def start_cluster(workdir: Path, masters: int = 3) -> list[RedisServer]:
    """Start ``masters`` cluster-enabled servers, join them, wait until every one is ok."""
    servers: list[RedisServer] = []
    try:
        for _ in range(masters):
            # Each node keeps its own nodes.conf; one directory per node keeps them apart.
            nodedir = workdir / f"node{len(servers)}"
            nodedir.mkdir()
            cluster_args = ["--cluster-enabled", "yes"]
            cluster_args += ["--cluster-config-file", str(nodedir / "nodes.conf")]
            servers.append(start_redis_server(nodedir, *cluster_args, with_bus=True))
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        create_args = ["create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        create = subprocess.run(
            ["redis-cli", "--cluster", *create_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            output = create.stdout + create.stderr
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
        wait_for_cluster(servers)
        return servers
    except BaseException:
        for server in servers:
            server.stop()
        raise


@pytest.fixture(scope="session")
def _redis_tools() -> None:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not on PATH: install Redis", pytrace=False)


@pytest.fixture(scope="session")
async def redis_cluster(
    _redis_tools: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RedisCluster]:
    """A client of a three-master Redis Cluster on loopback, started for this session."""
    try:
        servers = await asyncio.to_thread(start_cluster, tmp_path_factory.mktemp("cluster"))
    except RuntimeError as exc:
        pytest.fail(f"could not start a Redis Cluster: {exc}", pytrace=False)
    client = RedisCluster(host="127.0.0.1", port=servers[0].port)
    try:
        await client.initialize()
        yield client
    finally:
        await client.aclose()
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
async def redis_client() -> AsyncIterator[Redis]:
    """A client of the shared standalone Redis; fails (never skips) if it is down."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.fail(
            f"Redis unreachable at {REDIS_URL}: {type(exc).__name__}: {exc}\n"
            "Start it (./dev test starts local services) or set BASEREPO_TEST_REDIS_URL.",
            pytrace=False,
        )
    yield client
    await client.aclose()


@pytest.fixture
def spare_redis(_redis_tools: None, tmp_path: Path) -> Iterator[RedisServer]:
    """A standalone redis-server on a spare port that this test alone uses and may pause
    (SIGSTOP/SIGCONT), kill or restart; stopped afterwards."""
    server = start_redis_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()
