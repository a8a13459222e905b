"""A PostgreSQL primary and its streaming replica, made by the test session on spare loopback
ports, for the read-replica tests (docs/deployment.md, "PostgreSQL read replicas").

The shared server on 5432 has no ``replication`` line in its pg_hba.conf, so the pair is our
own: ``initdb`` a primary (``wal_level = replica``, a ``host replication`` trust line for
loopback), ``pg_basebackup -R -X stream`` a copy of it (``-R`` writes ``primary_conninfo`` and
``standby.signal``), start the copy on another port. About 1.5 s; both are stopped and their
directory removed at the end of the session.

Fixture (imported by ``tests/conftest.py``): ``pg_replica``, a :class:`ReplicaPair` with the
two URLs. Nothing is skipped: a pair that cannot be made fails the tests that need it, saying
which step failed and with what output.

``initdb`` refuses to run as root; as root every server command runs as the ``postgres`` OS
user (``runuser``), in a directory that user owns. Binaries come from ``BASEREPO_TEST_PG_BIN``,
else the newest ``/usr/lib/postgresql/*/bin``, else ``PATH``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_servers import free_port

__all__ = ["ReplicaPair", "pg_replica", "start_replica_pair", "stop_replica_pair"]

START_TIMEOUT_SECONDS = 30
OS_USER = "postgres"


@dataclass(frozen=True)
class ReplicaPair:
    """A running primary and its streaming replica."""

    primary_url: str
    replica_url: str
    directory: Path
    stop: list[list[str]]
    """The commands that stop both servers (replica first)."""


class ReplicaSetupError(RuntimeError):
    pass


def _bin_dir() -> Path:
    configured = os.environ.get("BASEREPO_TEST_PG_BIN")
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, Path(found).resolve().parent)
    for candidate in reversed(candidates):
        if all((candidate / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
            return candidate
    raise ReplicaSetupError(
        "no PostgreSQL server binaries (initdb, pg_basebackup): install postgresql or set "
        "BASEREPO_TEST_PG_BIN to their directory"
    )


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(OS_USER)
    except KeyError as missing:
        raise ReplicaSetupError(
            f"running as root, and initdb refuses root: no {OS_USER!r} OS user to run it as"
        ) from missing
    return ["runuser", "-u", OS_USER, "--", *command]


def _run(step: str, command: list[str]) -> None:
    done = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS * 2,
        check=False,
        # A directory the server user may enter: runuser keeps the caller's cwd.
        cwd="/",
    )
    if done.returncode != 0:
        raise ReplicaSetupError(
            f"{step} failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def start_replica_pair(directory: Path) -> ReplicaPair:
    """Make and start the pair under ``directory`` (which must be empty and ours)."""
    bin_dir = _bin_dir()
    if os.geteuid() == 0:
        record = pwd.getpwnam(OS_USER)
        os.chown(directory, record.pw_uid, record.pw_gid)
    directory.chmod(0o700)
    primary, replica = directory / "primary", directory / "replica"
    primary_port, replica_port = free_port(), free_port()
    while replica_port == primary_port:
        replica_port = free_port()
    stop: list[list[str]] = []
    _run(
        "initdb",
        [str(bin_dir / "initdb"), "-D", str(primary), "-U", "postgres", "-A", "trust", "-E", "UTF8",
         "--no-sync"],
    )  # fmt: skip
    with (primary / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# baserepo tests: a primary for one streaming replica\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{directory}'\n"
            "wal_level = replica\n"
            "max_wal_senders = 4\n"
            "fsync = off\n"
            "full_page_writes = off\n"
        )
    with (primary / "pg_hba.conf").open("a") as hba:
        # initdb's defaults already trust local replication; say it for loopback TCP too,
        # which is what pg_basebackup and the replica's primary_conninfo use.
        hba.write("\nhost replication all 127.0.0.1/32 trust\n")
    primary_log = directory / "primary.log"
    _run(
        "start the primary",
        [str(bin_dir / "pg_ctl"), "-D", str(primary), "-l", str(primary_log), "-o",
         f"-p {primary_port}", "-w", "-t", str(START_TIMEOUT_SECONDS), "start"],
    )  # fmt: skip
    stop.append([str(bin_dir / "pg_ctl"), "-D", str(primary), "-m", "immediate", "stop"])
    try:
        _run(
            "pg_basebackup",
            [str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
             "-U", "postgres", "-D", str(replica), "-R", "-X", "stream", "--no-sync"],
        )  # fmt: skip
        replica_log = directory / "replica.log"
        _run(
            "start the replica",
            [str(bin_dir / "pg_ctl"), "-D", str(replica), "-l", str(replica_log), "-o",
             f"-p {replica_port}", "-w", "-t", str(START_TIMEOUT_SECONDS), "start"],
        )  # fmt: skip
        stop.insert(0, [str(bin_dir / "pg_ctl"), "-D", str(replica), "-m", "immediate", "stop"])
        _wait_for_streaming(bin_dir, primary_port, primary_log, replica_log)
    except BaseException:
        _stop_all(stop)
        raise
    url = "postgresql+asyncpg://postgres@127.0.0.1:{}/postgres"
    return ReplicaPair(url.format(primary_port), url.format(replica_port), directory, stop)


def _wait_for_streaming(bin_dir: Path, port: int, primary_log: Path, replica_log: Path) -> None:
    # The version's own psql: a distribution's /usr/bin/psql may be a wrapper that looks
    # for clusters of its own.
    psql = str(bin_dir / "psql") if (bin_dir / "psql").exists() else shutil.which("psql") or "psql"
    query = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        done = subprocess.run(
            [psql, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c", query],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip() not in ("", "0"):
            return
        time.sleep(0.1)
    raise ReplicaSetupError(
        f"the replica did not start streaming within {START_TIMEOUT_SECONDS} s\n"
        f"primary log:\n{_log_tail(primary_log)}\nreplica log:\n{_log_tail(replica_log)}"
    )


def stop_replica_pair(pair: ReplicaPair) -> None:
    """Stop both servers (immediate shutdown: the data is thrown away next)."""
    _stop_all(pair.stop)


def _stop_all(stop: list[list[str]]) -> None:
    for command in stop:
        subprocess.run(_as_server_user(command), capture_output=True, check=False, cwd="/")


@pytest.fixture(scope="session")
def pg_replica() -> Iterator[ReplicaPair]:
    """A primary and a streaming replica for the session; fails (never skips) if either
    cannot be made."""
    directory = Path(tempfile.mkdtemp(prefix="baserepo-pg-replica-"))
    try:
        pair = start_replica_pair(directory)
    except (ReplicaSetupError, OSError, subprocess.SubprocessError) as failed:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"could not start a PostgreSQL primary and replica: {failed}", pytrace=False)
    try:
        yield pair
    finally:
        stop_replica_pair(pair)
        shutil.rmtree(directory, ignore_errors=True)
