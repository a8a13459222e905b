"""A PgBouncer in transaction pooling mode, started by the test session on a spare loopback port.

Fixture (imported by ``tests/conftest.py``): ``pgbouncer``, a ``PgBouncer`` in front of the
run's PostgreSQL test database (``db_url``), with ``pool_mode = transaction`` and
``default_pool_size = 2``: every client transaction runs on one of two server connections, so
what a client leaves on a server connection (a named prepared statement, a TEMP table) is met
by the next clients and processes, as in production. Started once per session (as the
``postgres`` user when the tests run as root: pgbouncer refuses to run as root), stopped at the
end.

Nothing is skipped: a missing ``pgbouncer`` program (``./dev test`` installs Debian's package)
or one that will not start fails the tests that need it, saying why. Other backends than
PostgreSQL have no PgBouncer: their tests are skipped, as the psycopg ones are.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.redis_servers import START_TIMEOUT_SECONDS, free_port

__all__ = ["POOL_SIZE", "PgBouncer", "pgbouncer", "start_pgbouncer"]

POOL_SIZE = 2
"""Server connections per database and user: fewer than the clients, so they are shared."""

# /usr/sbin is not on every user's PATH; Debian's package puts the program there.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


@dataclass
class PgBouncer:
    """A running ``pgbouncer``; ``url`` reaches the test database through it."""

    port: int
    workdir: Path
    database_url: str
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        server = make_url(self.database_url)
        return server.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    @property
    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _config(port: int, workdir: Path, database_url: str) -> str:
    server = make_url(database_url)
    user = server.username or "postgres"
    return f"""\
[databases]
{server.database} = host={server.host or "127.0.0.1"} port={server.port or 5432} \
dbname={server.database} user={user}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = {POOL_SIZE}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
; server_reset_query applies to session pooling only: in transaction mode nothing cleans a
; server connection between clients, which is the point of these tests.
server_reset_query =
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
"""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start_pgbouncer(database_url: str) -> PgBouncer:
    """Start pgbouncer on a spare port in front of ``database_url``'s database."""
    program = shutil.which("pgbouncer", path=_SEARCH_PATH)
    if program is None:
        raise RuntimeError(
            "pgbouncer is not installed (./dev test installs Debian's package: "
            "apt-get install -y pgbouncer)"
        )
    # Not under pytest's tmp dir: that one is private to root, and pgbouncer runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="baserepo-pgbouncer-"))
    as_root = os.geteuid() == 0
    user = make_url(database_url).username or "postgres"
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    port = free_port()
    ini = workdir / "pgbouncer.ini"
    ini.write_text(_config(port, workdir, database_url))
    args = [program, "-q", "-u", "postgres", str(ini)] if as_root else [program, "-q", str(ini)]
    if as_root:
        owner = pwd.getpwnam("postgres")
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    bouncer = PgBouncer(port, workdir, database_url, process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            log = bouncer.log[-2000:]
            bouncer.stop()
            raise RuntimeError(f"pgbouncer on port {port} did not start:\n{log}")
        time.sleep(0.02)
    return bouncer


@pytest.fixture(scope="session")
def pgbouncer(db_url: str) -> Iterator[PgBouncer]:
    """PgBouncer (transaction pooling, two server connections) in front of the test database."""
    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    try:
        bouncer = start_pgbouncer(db_url)
    except (RuntimeError, OSError, KeyError) as exc:
        pytest.fail(f"could not start pgbouncer: {exc}", pytrace=False)
    try:
        yield bouncer
    finally:
        bouncer.stop()
