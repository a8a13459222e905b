"""A database that cannot be reached: every repository call that touches it raises
DatabaseUnavailableError (never the driver's own error), and the session stays usable.

Each case points ``baserepo.create_engine`` at a loopback port where nothing listens (or, for
the other ways to fail, a name that does not resolve, a listener that never answers, one that
closes the connection at once), so nothing here needs the test databases.
"""

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

import baserepo
from baserepo import (
    BaseRepository,
    BulkOperationError,
    DatabaseUnavailableError,
    FailureKind,
    RepositoryDatabaseError,
)
from tests.models import User, UserCreate, UserUpdate
from tests.redis_servers import free_port

URLS = {
    "asyncpg": "postgresql+asyncpg://postgres:s3cret-pw@{host}:{port}/nothing",
    "psycopg": "postgresql+psycopg://postgres:s3cret-pw@{host}:{port}/nothing",
    "asyncmy": "mysql+asyncmy://root:s3cret-pw@{host}:{port}/nothing",
}
# How each driver is told to give up connecting: the blackhole test must not wait forever.
TIMEOUTS = {
    "asyncpg": {"timeout": 1},
    "psycopg": {"connect_timeout": 1},
    "asyncmy": {"connect_timeout": 1, "read_timeout": 1},
}

Repo = BaseRepository[User, UserCreate, UserUpdate]
Call = Callable[[Repo], Awaitable[Any]]

CALLS: dict[str, Call] = {
    "get": lambda repo: repo.get(1),
    "get_many": lambda repo: repo.get_many([1, 2]),
    "list": lambda repo: repo.list(department="eng"),
    "count": lambda repo: repo.count(department="eng"),
    "exists": lambda repo: repo.exists(department="eng"),
    "page": lambda repo: repo.page(limit=5),
    "create": lambda repo: repo.create({"name": "Ada"}),
    "update": lambda repo: repo.update(1, {"name": "Ada"}),
    "delete": lambda repo: repo.delete(1),
    "restore": lambda repo: repo.restore(1),
    "get_or_create": lambda repo: repo.get_or_create({"name": "Ada"}, email="ada@example.com"),
    "update_or_create": lambda repo: repo.update_or_create(
        {"name": "Ada"}, email="ada@example.com"
    ),
    "bulk_create": lambda repo: repo.bulk_create([{"name": "Ada"}]),
    "bulk_update": lambda repo: repo.bulk_update({"department": "eng"}, {"salary": 1}),
    "bulk_delete": lambda repo: repo.bulk_delete({"department": "eng"}),
    "bulk_upsert": lambda repo: repo.bulk_upsert(
        [{"name": "Ada", "email": "ada@example.com"}], unique_fields="email"
    ),
    "bulk_update_rows": lambda repo: repo.bulk_update_rows([{"id": 1, "salary": 1}]),
}


@asynccontextmanager
async def session_on(url: str, **connect_args: Any) -> AsyncIterator[AsyncSession]:
    engine = baserepo.create_engine(url, connect_args=connect_args)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            yield session
    finally:
        await engine.dispose()


def refused_url(driver: str) -> str:
    return URLS[driver].format(host="127.0.0.1", port=free_port())  # nothing listens there


async def assert_unavailable(call: Call, repo: Repo) -> DatabaseUnavailableError:
    with pytest.raises(DatabaseUnavailableError) as caught:
        await call(repo)
    assert "s3cret-pw" not in str(caught.value)
    assert "s3cret-pw" not in str(caught.value.statement)
    return caught.value


@pytest.mark.parametrize("driver", URLS)
@pytest.mark.parametrize("name", CALLS)
async def test_every_call_raises_database_unavailable(driver: str, name: str) -> None:
    async with session_on(refused_url(driver)) as session:
        repo = Repo(User, session)
        first = await assert_unavailable(CALLS[name], repo)
        # Nothing broken is left behind: the same call fails the same way, not with
        # "Can't reconnect until invalid transaction is rolled back".
        second = await assert_unavailable(CALLS[name], repo)
        assert type(first.__cause__) is type(second.__cause__)
        await assert_unavailable(CALLS["get"], repo)


# -- other ways a database is out of reach ---------------------------------------------------

SOME_CALLS = ("get", "create", "bulk_create")


@asynccontextmanager
async def listener(on_connect: Callable[[socket.socket], None]) -> AsyncIterator[int]:
    """A loopback port whose accepted connections get ``on_connect``; yields the port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    accepted: list[socket.socket] = []
    loop = asyncio.get_running_loop()

    async def accept() -> None:
        while True:
            client, _ = await loop.sock_accept(server)
            accepted.append(client)
            on_connect(client)

    task = asyncio.create_task(accept())
    try:
        yield server.getsockname()[1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for client in accepted:
            client.close()
        server.close()


def hang_up(client: socket.socket) -> None:
    client.close()


def say_nothing(client: socket.socket) -> None:
    """Keep the connection open and never answer (a server stuck, or a firewall's blackhole
    past the handshake)."""


@pytest.mark.parametrize("driver", URLS)
@pytest.mark.parametrize("name", SOME_CALLS)
async def test_a_host_name_that_does_not_resolve(driver: str, name: str) -> None:
    url = URLS[driver].format(host="no-such-host.invalid", port=5432)
    async with session_on(url) as session:
        error = await assert_unavailable(CALLS[name], Repo(User, session))
        assert isinstance(error.__cause__, socket.gaierror) or "no-such-host" in str(error)


@pytest.mark.parametrize("driver", URLS)
@pytest.mark.parametrize("name", SOME_CALLS)
async def test_a_server_that_closes_the_connection_at_once(driver: str, name: str) -> None:
    async with listener(hang_up) as port:
        url = URLS[driver].format(host="127.0.0.1", port=port)
        async with session_on(url) as session:
            repo = Repo(User, session)
            await assert_unavailable(CALLS[name], repo)
            await assert_unavailable(CALLS[name], repo)


@pytest.mark.parametrize("driver", URLS)
async def test_a_connect_that_times_out(driver: str) -> None:
    async with listener(say_nothing) as port:
        url = URLS[driver].format(host="127.0.0.1", port=port)
        async with session_on(url, **TIMEOUTS[driver]) as session:
            repo = Repo(User, session)
            async with asyncio.timeout(30):  # the driver's timeout must fire, not this one
                for name in SOME_CALLS:
                    error = await assert_unavailable(CALLS[name], repo)
                    # Says what happened, even where the driver's exception has no words
                    # (asyncpg's bare TimeoutError).
                    assert str(error).removeprefix("database unavailable:").strip()


@pytest.mark.parametrize("name", CALLS)
async def test_a_sqlite_file_in_a_missing_directory_is_not_unavailable(
    name: str, tmp_path: Path
) -> None:
    """A path that cannot be opened is a mistake in the URL, not an outage: retrying (or a
    503 asking the client to) cannot help, so it is RepositoryDatabaseError itself, naming
    SQLite's reason."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'app.db'}"
    async with session_on(url) as session:
        repo = Repo(User, session)
        for _ in range(2):
            with pytest.raises(RepositoryDatabaseError) as caught:
                await CALLS[name](repo)
            assert not isinstance(caught.value, DatabaseUnavailableError)
            assert "unable to open database file" in str(caught.value)


# -- the caller's own OSError is never the database's ------------------------------------------


class SourceGone(ConnectionResetError):
    """What a caller's input may raise: an OSError (even a ConnectionError) of its own."""


@pytest.mark.parametrize("method", ["bulk_create", "bulk_upsert", "bulk_update_rows"])
@pytest.mark.parametrize("at_once", [False, True], ids=["midway", "at_once"])
async def test_an_input_raising_oserror_is_the_callers_error(
    session: AsyncSession, method: str, at_once: bool
) -> None:
    repo = Repo(User, session)
    ada = await repo.create({"name": "Ada", "email": "ada@example.com"})
    records = {
        "bulk_create": {"name": "Bob", "email": "bob@example.com"},
        "bulk_upsert": {"name": "Ada L.", "email": "ada@example.com"},
        "bulk_update_rows": {"id": ada.id, "name": "Ada L."},
    }
    broken = SourceGone(104, "the caller's socket was reset")

    def source() -> Iterator[dict[str, Any]]:
        if not at_once:
            yield records[method]
        raise broken

    call: Any = getattr(repo, method)
    extra = {"unique_fields": "email"} if method == "bulk_upsert" else {}
    with pytest.raises((BulkOperationError, SourceGone)) as caught:
        await call(source(), batch_size=1, **extra)
    raised = caught.value
    if method == "bulk_update_rows":  # it reads its whole input before writing anything
        assert raised is broken
        return
    # Stopped midway as by any exception of the input: its cause as it was raised.
    assert isinstance(raised, BulkOperationError)
    assert raised.__cause__ is broken
    assert raised.result.success_count == (0 if at_once else 1)
    assert await repo.count() == (2 if method == "bulk_create" and not at_once else 1)


# -- a database that goes away between two batches -----------------------------------------------


class Proxy:
    """A TCP relay to the test database that can stop at any moment: then it refuses new
    connections (nothing listens on its port any more) and drops those it relays."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        server_in, server = await asyncio.open_connection(*self._target)
        self._writers += [client, server]
        await asyncio.gather(
            self._pipe(client_in, server), self._pipe(server_in, client), return_exceptions=True
        )

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


async def test_a_database_gone_between_batches_stops_the_call_as_unavailable(
    db_url: str, tables: None
) -> None:
    """Each batch connects anew (NullPool), so the second batch's connect is refused: on
    asyncpg that is the driver's raw ConnectionRefusedError, out of a batch this time."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        pytest.skip("SQLite has no server to go away")
    proxy = Proxy((url.host or "127.0.0.1", url.port or 0))
    proxied = url.set(host="127.0.0.1", port=await proxy.start())
    engine = baserepo.create_engine(proxied, poolclass=NullPool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:

            async def stop_after_first_batch(done: int) -> None:
                if done == 1:
                    await proxy.stop()

            records = [{"name": f"user {i}"} for i in range(3)]
            with pytest.raises(BulkOperationError) as caught:
                await Repo(User, session).bulk_create(
                    records, batch_size=1, progress=stop_after_first_batch
                )
            assert isinstance(caught.value.__cause__, DatabaseUnavailableError)
            result = caught.value.result
            assert result.success_count == 1
            assert [(f.index, f.kind) for f in result.failures] == [(1, FailureKind.UNAVAILABLE)]
            # The session is not stuck: the next call is refused the same way.
            await assert_unavailable(CALLS["get"], Repo(User, session))
    finally:
        await engine.dispose()
