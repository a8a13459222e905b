"""examples/fastapi_app, driven over HTTP with httpx against every database of conftest.py.

The app runs in-process through ``httpx.ASGITransport``, which does not run ASGI lifespan
events: each test enters the app's lifespan itself (``app.router.lifespan_context``, what
Starlette runs at startup), so the engine and cache are the ones the app makes. The example
is imported by path (``examples`` is a package at the repository's root), never installed.
Caches run in the process, or on the shared Redis under a key prefix of the test's own.
"""

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.fastapi_app.db import AppResources
from examples.fastapi_app.main import create_app
from examples.fastapi_app.models import Base, User
from examples.fastapi_app.settings import Settings
from redis.asyncio import Redis
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from baserepo import EventType, RepositoryEvent
from tests.redis_servers import REDIS_URL, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningApp:
    client: httpx.AsyncClient
    resources: AppResources

    def checked_out(self) -> int:
        """Connections of the app's pool that are not back in it."""
        pool: Any = self.resources.engine.pool
        return int(pool.checkedout())


@asynccontextmanager
async def run_app(settings: Settings) -> AsyncIterator[RunningApp]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield RunningApp(client, app.state.resources)


# DROP TABLE waits for a transaction a broken app left open: fail after 10 s instead.
_LOCK_TIMEOUT = {
    "postgresql": "SET LOCAL lock_timeout = '10s'",
    "mysql": "SET SESSION lock_wait_timeout = 10",
}


async def _drop_example_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name in _LOCK_TIMEOUT:
            await conn.execute(text(_LOCK_TIMEOUT[engine.dialect.name]))
        await conn.run_sync(Base.metadata.drop_all)
        if engine.dialect.name == "mysql":
            await conn.execute(text("SET SESSION lock_wait_timeout = DEFAULT"))


@pytest.fixture
async def example_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    """No example table at the start (the app creates them), none left at the end."""
    await _drop_example_tables(engine)
    yield
    await _drop_example_tables(engine)


@pytest.fixture
def cache_kind() -> str:
    """Where the app's cache lives; a test parametrizes it to run on Redis too."""
    return "memory"


@pytest.fixture
async def app(db_url: str, example_tables: None, cache_kind: str) -> AsyncIterator[RunningApp]:
    prefix = f"fastapi-test-{uuid.uuid4().hex[:12]}"
    redis_url = REDIS_URL if cache_kind == "redis" else None
    async with run_app(Settings(db_url, redis_url=redis_url, cache_prefix=prefix)) as running:
        yield running
        assert running.checked_out() == 0, "a request left its connection checked out"
    if redis_url:
        client = Redis.from_url(redis_url)
        doomed = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if doomed:
            await client.unlink(*doomed)
        await client.aclose()


async def _rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """The table as the database holds it, by email: read past the app and its cache."""
    async with engine.connect() as conn:
        result = await conn.execute(select(User.__table__))
        return {row.email: dict(row._mapping) for row in result}


async def _create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/users", json=fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _people(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return [
        await _create(client, email="ada@example.com", name="Ada", age=36, department="eng"),
        await _create(client, email="bo@example.com", name="Bo", age=25, department="ops"),
        await _create(client, email="cy@example.com", name="Cyrus", age=51, department="eng"),
    ]


def _names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [user["name"] for user in response.json()]


# -- CRUD and filters ------------------------------------------------------------------------


async def test_create_then_get_and_list_with_filters(app: RunningApp) -> None:
    ada, bo, _ = await _people(app.client)
    assert ada["id"] != bo["id"]
    assert ada["is_active"] is True

    got = await app.client.get(f"/users/{bo['id']}")
    assert got.status_code == 200
    assert got.json() == bo
    assert (await app.client.get("/users/999999")).status_code == 404

    client = app.client
    assert _names(await client.get("/users", params={"department": "eng"})) == ["Ada", "Cyrus"]
    assert _names(await client.get("/users", params={"age__gte": 30, "order_by": "-age"})) == [
        "Cyrus",
        "Ada",
    ]
    both = {"department__in": ["eng", "ops"], "name__icontains": "Y", "limit": 5}
    assert _names(await client.get("/users", params=both)) == ["Cyrus"]
    assert _names(await client.get("/users", params={"limit": 1, "offset": 1})) == ["Bo"]


@pytest.mark.parametrize(
    "query",
    [
        {"email__startswith": "a"},  # a real column, a lookup that is not offered
        {"id__gt": 0},  # a real column that is not offered
        {"password__regex": "^a"},  # no such column: refused before the repository sees it
    ],
)
async def test_a_filter_that_is_not_whitelisted_is_refused(
    app: RunningApp, query: dict[str, Any]
) -> None:
    await _people(app.client)
    response = await app.client.get("/users", params=query)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ["query", next(iter(query))]


async def test_a_bad_filter_value_is_422_naming_its_parameter(app: RunningApp) -> None:
    await _people(app.client)
    # Not an integer: FastAPI refuses it against the whitelist's type.
    response = await app.client.get("/users", params={"age__gt": "abc"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "age__gt"]]
    # An integer, but not one the INTEGER column can hold: the repository's InvalidFilterError.
    response = await app.client.get("/users", params={"age__gt": str(10**30)})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "invalid_filter"
    assert error["loc"] == ["query", "age__gt"]
    assert "out of range" in error["msg"] or "less than or equal" in error["msg"]


async def test_a_record_the_columns_refuse_is_422_naming_the_field(app: RunningApp) -> None:
    too_long = await app.client.post("/users", json={"email": "x@example.com", "name": "x" * 101})
    assert too_long.status_code == 422
    [error] = too_long.json()["detail"]
    assert error["type"] == "invalid_record"
    assert error["loc"] == ["body", "name"]
    assert "at most 100" in error["msg"]

    too_old = await app.client.post(
        "/users", json={"email": "y@example.com", "name": "Y", "age": 2**40}
    )
    assert too_old.status_code == 422
    assert [e["loc"] for e in too_old.json()["detail"]] == [["body", "age"]]
    assert await _rows(app.resources.engine) == {}


async def test_a_unique_conflict_is_409(app: RunningApp, engine: AsyncEngine) -> None:
    ada, bo, _ = await _people(app.client)
    again = await app.client.post("/users", json={"email": ada["email"], "name": "Ada II"})
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert detail["type"] == "conflict"
    assert detail["unique"] is True
    assert "email" in detail["msg"].lower()

    taken = await app.client.patch(f"/users/{bo['id']}", json={"email": ada["email"]})
    assert taken.status_code == 409
    rows = await _rows(engine)
    assert rows["bo@example.com"]["name"] == "Bo"
    assert len(rows) == 3
    # The failed write left the cache alone: Bo reads as he is.
    assert (await app.client.get(f"/users/{bo['id']}")).json()["email"] == "bo@example.com"


# -- bulk endpoints --------------------------------------------------------------------------


async def test_bulk_import_reports_bad_records_by_index(
    app: RunningApp, engine: AsyncEngine
) -> None:
    await _create(app.client, email="taken@example.com", name="Taken")
    records = [
        {"email": "a@example.com", "name": "A", "age": 30},
        {"email": "b@example.com"},  # no name
        {"email": "c@example.com", "name": "C", "department": "eng"},
        {"email": "taken@example.com", "name": "Dup"},  # the database refuses it
        {"email": "d@example.com", "name": "D" * 101},  # longer than the column
        {"email": "e@example.com", "name": "E", "age": -1},  # UserCreate: age >= 0
        {"email": "f@example.com", "name": "F", "salary": 1},  # no such field
        {"email": "g@example.com", "name": "G"},
    ]
    response = await app.client.post("/users/bulk", json=records)
    assert response.status_code == 200, response.text
    result = response.json()

    assert (result["success_count"], result["error_count"]) == (3, 5)
    failures = {f["index"]: f for f in result["failures"]}
    assert sorted(failures) == [1, 3, 4, 5, 6]
    assert {i: failures[i]["kind"] for i in failures} == {
        1: "validation",
        3: "integrity",
        4: "validation",
        5: "validation",
        6: "validation",
    }
    assert {i: failures[i]["field"] for i in (1, 4, 5, 6)} == {
        1: "name",
        4: "name",
        5: "age",
        6: "salary",
    }
    assert "email" in failures[3]["reason"].lower()  # the database names the unique key

    rows = await _rows(engine)
    assert set(rows) == {"taken@example.com", "a@example.com", "c@example.com", "g@example.com"}
    # created_ids follow the input order of the good records.
    good = ["a@example.com", "c@example.com", "g@example.com"]
    assert result["created_ids"] == [rows[email]["id"] for email in good]


async def test_bulk_import_refuses_a_body_that_is_not_a_list(app: RunningApp) -> None:
    response = await app.client.post("/users/bulk", json={"email": "a@example.com"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_bulk_update_and_delete_by_whitelisted_filters(
    app: RunningApp, engine: AsyncEngine
) -> None:
    ada, _, cyrus = await _people(app.client)
    changed = await app.client.patch(
        "/users", params={"department": "eng"}, json={"is_active": False}
    )
    assert changed.status_code == 200, changed.text
    assert sorted(changed.json()["affected_ids"]) == sorted([ada["id"], cyrus["id"]])
    assert changed.json()["success_count"] == 2

    everyone = await app.client.patch("/users", json={"is_active": False})
    assert everyone.status_code == 422  # no filter: it would reach every row

    deleted = await app.client.delete("/users", params={"is_active": "false"})
    assert deleted.status_code == 200, deleted.text
    assert sorted(deleted.json()["affected_ids"]) == sorted([ada["id"], cyrus["id"]])
    assert set(await _rows(engine)) == {"bo@example.com"}
    assert (await app.client.get(f"/users/{ada['id']}")).status_code == 404
    assert (await app.client.delete("/users")).status_code == 422


# -- sessions, cache and cancellation --------------------------------------------------------


async def test_concurrent_requests_each_have_their_own_session(
    app: RunningApp, engine: AsyncEngine
) -> None:
    users = [
        await _create(app.client, email=f"u{i}@example.com", name=f"U{i}", age=20)
        for i in range(10)
    ]
    requests = [
        app.client.patch(f"/users/{u['id']}", json={"age": 30 + i}) for i, u in enumerate(users)
    ]
    requests += [app.client.get(f"/users/{u['id']}") for u in users]
    # Bounded: a session shared by the requests may hang them rather than fail them.
    responses = await asyncio.wait_for(asyncio.gather(*requests), 60)
    # One session shared by the requests would fail here ("concurrent operations are not
    # permitted", "provisioning a new connection").
    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert [r.json()["age"] for r in responses[:10]] == [30 + i for i in range(10)]

    rows = await _rows(engine)
    assert [rows[f"u{i}@example.com"]["age"] for i in range(10)] == [30 + i for i in range(10)]
    listed = await app.client.get("/users", params={"age__gte": 30, "limit": 50})
    assert sorted(u["age"] for u in listed.json()) == [30 + i for i in range(10)]


@pytest.mark.parametrize("cache_kind", ["memory", "redis"])
async def test_a_cached_read_after_a_write_through_another_request_is_fresh(
    app: RunningApp, cache_kind: str
) -> None:
    ada, _, _ = await _people(app.client)
    stats = app.resources.cache.stats
    for _ in range(2):  # the second round is served from the cache
        assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 36
        assert _names(await app.client.get("/users", params={"department": "eng"})) == [
            "Ada",
            "Cyrus",
        ]
        await app.resources.cache.settle()  # the fills have landed
    assert stats().hits >= 2, stats()

    assert (await app.client.patch(f"/users/{ada['id']}", json={"age": 37})).status_code == 200
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 37
    moved = await app.client.patch(
        "/users", params={"name__icontains": "cyrus"}, json={"department": "ops"}
    )
    assert moved.json()["success_count"] == 1
    assert _names(await app.client.get("/users", params={"department": "eng"})) == ["Ada"]
    assert (await app.client.delete(f"/users/{ada['id']}")).status_code == 204
    assert (await app.client.get(f"/users/{ada['id']}")).status_code == 404
    assert _names(await app.client.get("/users", params={"department": "eng"})) == []


@pytest.mark.parametrize("cache_kind", ["redis"])
async def test_a_request_cancelled_after_its_commit_leaves_no_stale_entry(
    app: RunningApp, engine: AsyncEngine, cache_kind: str
) -> None:
    """The request's task is cancelled (a timeout, a server shutting down) while the work
    that follows its commit runs: no connection stays checked out, and the cache entry filled
    before the write is not served afterwards."""
    ada, _, _ = await _people(app.client)
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 36
    await app.resources.cache.settle()  # the entry with age 36 is in Redis

    in_handler, release = asyncio.Event(), asyncio.Event()

    async def slow_subscriber(event: RepositoryEvent) -> None:
        in_handler.set()
        await release.wait()

    app.resources.events.subscribe(EventType.UPDATED, slow_subscriber)
    request = asyncio.create_task(app.client.patch(f"/users/{ada['id']}", json={"age": 37}))
    await asyncio.wait_for(in_handler.wait(), 10)
    request.cancel()
    await asyncio.sleep(0)  # the cancellation reaches the request while the subscriber waits
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    app.resources.events.unsubscribe(EventType.UPDATED, slow_subscriber)

    assert app.checked_out() == 0
    assert (await _rows(engine))["ada@example.com"]["age"] == 37  # it was committed
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 37


@pytest.mark.parametrize("cache_kind", ["redis"])
async def test_a_request_cancelled_before_its_commit_leaves_nothing_open(
    app: RunningApp, engine: AsyncEngine, cache_kind: str
) -> None:
    """The request's task is cancelled while its UPDATE is on the wire: nothing is
    committed, no transaction or connection stays open, the cached row is still the
    database's, and the next request writes and reads normally."""
    ada, _, _ = await _people(app.client)
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 36
    await app.resources.cache.settle()

    in_update, release = asyncio.Event(), asyncio.Event()

    def hold_the_update(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            in_update.set()
            # Runs inside the greenlet of the request's await: await_only suspends the
            # request right here, as a slow statement would.
            await_only(release.wait())

    sync_engine = app.resources.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", hold_the_update)
    try:
        request = asyncio.create_task(app.client.patch(f"/users/{ada['id']}", json={"age": 37}))
        await asyncio.wait_for(in_update.wait(), 10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    finally:
        release.set()
        event.remove(sync_engine, "before_cursor_execute", hold_the_update)

    assert app.checked_out() == 0
    assert (await _rows(engine))["ada@example.com"]["age"] == 36  # nothing was committed
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 36
    assert (await app.client.patch(f"/users/{ada['id']}", json={"age": 38})).status_code == 200
    assert (await app.client.get(f"/users/{ada['id']}")).json()["age"] == 38


_UNREACHABLE = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:{port}/nothing",
}
_REQUESTS: dict[str, tuple[str, str, Any]] = {
    "get": ("GET", "/users/1", None),
    "list": ("GET", "/users?department=eng", None),
    "create": ("POST", "/users", {"email": "a@example.com", "name": "A"}),
    "bulk": ("POST", "/users/bulk", [{"email": "a@example.com", "name": "A"}]),
}


@pytest.mark.parametrize("database", _UNREACHABLE)
@pytest.mark.parametrize("call", _REQUESTS)
async def test_a_database_that_cannot_be_reached_is_503(database: str, call: str) -> None:
    url = _UNREACHABLE[database].format(port=free_port())  # nothing listens there
    method, path, body = _REQUESTS[call]
    async with run_app(Settings(url, create_tables=False)) as running:
        response = await running.client.request(method, path, json=body)
        assert response.status_code == 503, response.text
        assert response.json()["detail"]["type"] == "database_unavailable"
        assert "127.0.0.1" not in response.text  # where the database is stays in the log
        assert running.checked_out() == 0


# -- the documented command ------------------------------------------------------------------


def test_the_documented_uvicorn_command_serves_the_app(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "APP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "examples.fastapi_app.main:app",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(lambda: httpx.get(f"{base}/users", timeout=1).status_code, server)
        created = httpx.post(f"{base}/users", json={"email": "a@example.com", "name": "A"})
        assert created.status_code == 201, created.text
        listed = httpx.get(f"{base}/users", params={"name__icontains": "a"})
        assert [u["email"] for u in listed.json()] == ["a@example.com"]
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert "Application shutdown complete" in output, output  # the lifespan ran its exit


def _wait_until_up(probe: Callable[[], int], server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"uvicorn exited: {server.communicate()[0].decode()}")
        try:
            if probe() == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("uvicorn did not answer within 20 s")
