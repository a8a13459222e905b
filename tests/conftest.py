"""Shared fixtures: every integration test runs once per database backend.

Backends are chosen with ``BASEREPO_TEST_DATABASES`` (comma list of ``sqlite``, ``postgresql``,
``mariadb``; default all three). A backend that is asked for but cannot be reached fails every
test that needs it, naming the URL: it is never skipped. ``BASEREPO_TEST_<BACKEND>_URL`` points a
backend at another server.

Each run gets server databases of its own (``baserepo_test_<pid>``), dropped at the end, so two
runs on one machine never drop each other's tables.

Fixtures: ``db_url`` (parametrised, ids = backend names), ``engine`` (one per backend and session),
``tables`` (fresh schema of ``tests.models`` for each test), ``session``, ``session_factory`` and
``count_queries``; ``pg_replica`` (a PostgreSQL primary and its streaming replica, made per
session) from ``tests/pg_replica.py``; ``pgbouncer`` (PgBouncer in front of the PostgreSQL test
database) from ``tests/pgbouncer.py``; the Redis fixtures ``redis_client``, ``redis_cluster``
and ``spare_redis`` come from ``tests/redis_servers.py``, ``redis_sentinel`` from
``tests/redis_sentinel.py``.
``@pytest.mark.requires("insert_returning", ...)`` runs a test only where the connected dialect
has every named capability (any boolean attribute of the SQLAlchemy dialect).
"""

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from baserepo import create_engine
from baserepo.testing import drop_database, ensure_database
from tests.models import Base
from tests.pg_replica import pg_replica  # noqa: F401  (fixture: a primary and its replica)
from tests.pgbouncer import pgbouncer  # noqa: F401  (a fixture, shared by every test directory)
from tests.redis_sentinel import redis_sentinel  # noqa: F401  (a fixture)
from tests.redis_servers import (  # fixtures, shared by every test directory
    _redis_tools,  # noqa: F401
    redis_client,  # noqa: F401
    redis_cluster,  # noqa: F401
    spare_redis,  # noqa: F401
)

DEFAULT_URLS = {
    "sqlite": "",  # a file under pytest's tmp dir, made per session
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_test",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/baserepo_test?charset=utf8mb4",
}
CONNECT_TIMEOUT_SECONDS = 10


def _requested_backends() -> list[str]:
    raw = os.environ.get("BASEREPO_TEST_DATABASES", ",".join(DEFAULT_URLS))
    return [name.strip().lower() for name in raw.split(",") if name.strip()]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): run only on backends whose SQLAlchemy dialect has every "
        "named boolean attribute, e.g. requires('insert_returning')",
    )
    requested = _requested_backends()
    unknown = sorted(set(requested) - set(DEFAULT_URLS))
    if unknown or not requested:
        raise pytest.UsageError(
            f"BASEREPO_TEST_DATABASES={os.environ.get('BASEREPO_TEST_DATABASES')!r}: "
            f"unknown {unknown}; choose from {', '.join(DEFAULT_URLS)}"
        )


def _url_for(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    override = os.environ.get(f"BASEREPO_TEST_{backend.upper()}_URL")
    if override:
        return override
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'baserepo_test.db'}"
    # A database of its own per run: two runs sharing one would drop each other's tables.
    url = make_url(DEFAULT_URLS[backend])
    return url.set(database=f"{url.database}_{os.getpid()}").render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=[b for b in DEFAULT_URLS if b in _requested_backends()])
async def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """URL of one requested backend, its test database created; fails if it is unreachable."""
    url = _url_for(request.param, tmp_path_factory)
    try:
        await asyncio.wait_for(ensure_database(url), CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    else:
        yield url
        if not os.environ.get(f"BASEREPO_TEST_{request.param.upper()}_URL"):
            await drop_database(url)
        return
    pytest.fail(
        f"{request.param} backend unreachable at {make_url(url)!r}: {error}\n"
        "Start it (./dev test starts local services) or leave it out of BASEREPO_TEST_DATABASES.",
        pytrace=False,
    )


# Transaction control differs by backend (the SQLite savepoint recipe emits its own BEGIN), so
# `StatementLog.count` leaves it out; `statements` keeps everything for debugging.
_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT|START\s+TRANSACTION)\b",
    re.IGNORECASE,
)


@dataclass
class StatementLog:
    """Statements sent to the database while a `count_queries()` block was open."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Statements other than transaction control (BEGIN, SAVEPOINT, ROLLBACK TO ...)."""
        return sum(1 for s in self.statements if not _TRANSACTION_CONTROL.match(s))


@pytest.fixture(scope="session")
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The backend's engine, built by `baserepo.create_engine`."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:  # also initialises the dialect's capability flags
            await conn.execute(text("SELECT 1"))
        yield engine
    finally:
        await engine.dispose()


# DDL waits for locks that a connection leaked by an earlier test still holds; fail fast instead
# of hanging (MariaDB waits a day by default). (before DDL, after DDL) per dialect.
_DDL_LOCK_TIMEOUT: dict[str, tuple[str, str | None]] = {
    "postgresql": ("SET LOCAL lock_timeout = '10s'", None),
    "mysql": ("SET SESSION lock_wait_timeout = 10", "SET SESSION lock_wait_timeout = DEFAULT"),
}


@pytest.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[None]:
    """Drop and recreate every table of `tests.models`, so each test owns its data."""
    before, after = _DDL_LOCK_TIMEOUT.get(engine.dialect.name, (None, None))
    async with engine.begin() as conn:
        if before:
            await conn.execute(text(before))
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        if after:
            await conn.execute(text(after))
    yield
    checkout_count = getattr(engine.pool, "checkedout", None)
    leaked = checkout_count() if checkout_count else 0
    if leaked:
        pytest.fail(f"the test left {leaked} connection(s) checked out of the pool", pytrace=False)


@pytest.fixture
async def session(engine: AsyncEngine, tables: None) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def session_factory(engine: AsyncEngine, tables: None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def count_queries(engine: AsyncEngine) -> Callable[[], AbstractContextManager[StatementLog]]:
    """Count statements sent on the engine inside a block.

    Example:
        with count_queries() as log:
            await repo.bulk_create(rows)
        assert log.count == 1, log.statements
    """

    @contextmanager
    def counting() -> Iterator[StatementLog]:
        log = StatementLog()

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            log.statements.append(statement)

        # Connections look up engine listeners at each statement, so already open ones count too.
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            yield log
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)

    return counting


@pytest.fixture(autouse=True)
def _check_required_capabilities(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("requires")
    if marker is None:
        return
    dialect = request.getfixturevalue("engine").dialect
    for capability in marker.args:
        if not hasattr(dialect, capability):
            pytest.fail(f"requires({capability!r}): not an attribute of {type(dialect).__name__}")
        if not getattr(dialect, capability):
            version = ".".join(map(str, dialect.server_version_info or ()))
            pytest.skip(f"{dialect.name} {version} lacks {capability}")
