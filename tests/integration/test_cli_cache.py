"""``baserepo cache stats|warm|invalidate`` against the real Redis and every database: the
command is run for real, in-process (``cli.main`` in a thread, output captured) and as a child
process (``python -m baserepo`` and the ``baserepo`` console script), and what it reports or
does is checked against what repositories see.

Each test works under a key prefix of its own (``CacheStack``), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, CacheConfig, CacheWarmingConfig, cli
from tests.integration.cache_stack import REDIS_URL, CacheStack, open_stack
from tests.models import User
from tests.redis_servers import RedisServer, free_port

Factory = async_sessionmaker[AsyncSession]
PROJECT = Path(__file__).resolve().parents[2]
MODEL = "tests.models:User"
LIST_ENG = {"department": "eng"}


@pytest.fixture
async def stack() -> AsyncIterator[CacheStack]:
    async with open_stack("redis") as opened:
        yield opened


def app_config(stack: CacheStack) -> CacheConfig:
    """The application's config, as one process of it would make it: usage is sent to Redis
    at every use, so the popular queries are there for the command to see."""
    return stack.config(CacheWarmingConfig(min_usage_count=2), usage_flush_every=1)


async def run(*args: str) -> tuple[int, str, str]:
    """``baserepo <args>`` in-process (in a thread: it runs its own event loop)."""

    def call() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(list(args))
        return status, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(call)


def cache_args(command: str, stack: CacheStack, *more: str) -> list[str]:
    return ["cache", command, MODEL, "--redis-url", REDIS_URL, "--key-prefix", stack.prefix, *more]


async def run_json(command: str, stack: CacheStack, *more: str) -> dict[str, Any]:
    status, out, err = await run(*cache_args(command, stack, "--json", *more))
    assert (status, err) == (0, ""), err
    document: dict[str, Any] = json.loads(out)
    return document


async def seed(factory: Factory, config: CacheConfig | None = None, start: int = 0) -> None:
    async with factory() as session:
        result = await BaseRepository(User, session, config).bulk_create(
            [
                {"name": f"u{i}", "email": f"u{i}@x", "department": ("eng", "ops")[i % 2]}
                for i in range(start, start + 10)
            ]
        )
    assert result.success_count == 10


async def read(config: CacheConfig, factory: Factory, times: int = 1) -> dict[str, Any]:
    """The app's popular reads, ``times`` times each, each in a request (session) of its own;
    returns what the last ones read and whether each was a hit."""
    result: dict[str, Any] = {}
    for _ in range(times):
        before = config.stats("users")
        async with factory() as session:
            repo = BaseRepository(User, session, config)
            result["eng"] = sorted(
                (u.name, u.salary) for u in await repo.list(LIST_ENG, order_by=["id"])
            )
            result["active"] = await repo.count(is_active=True)
        await config.settle()
        after = config.stats("users")
        result["hits"] = after.hits - before.hits
        result["misses"] = after.misses - before.misses
    return result


async def raw_generation(stack: CacheStack) -> int:
    client = stack.redis_client()
    assert client is not None
    return int(await client.get(f"{stack.prefix}:v1:{{users}}:~gen"))


# -- stats ---------------------------------------------------------------------------------


async def test_stats_shows_the_generation_entries_and_popular_queries(
    session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory, times=3)
    async with session_factory() as session:
        await BaseRepository(User, session, config).get(1)
    await config.settle()

    stats = await run_json("stats", stack, "--min-uses", "2")

    client = stack.redis_client()
    assert client is not None
    assert stats["class"] == MODEL
    assert stats["model"] == "users"
    assert stats["keys_base"] == f"{stack.prefix}:v1:{{users}}"
    assert stats["server_run_id"] == (await client.info("server"))["run_id"]
    assert stats["generation"] == await raw_generation(stack)
    assert stats["generation_trusted"] is True
    assert stats["generation_moved_at"] is not None
    assert stats["entries"]["total"] == stats["entries"]["current"] == 3
    assert stats["entries"]["by_kind"] == {"count": 1, "get": 1, "list": 1}
    assert stats["entries"]["stale"] == 0
    assert stats["entries"]["bytes"] > 0
    assert stats["write_intents"] == {"live": 0, "expired": 0}
    assert stats["tracked_queries"] == 3
    popular = [(q["operation"], q["score"], q["warmed"]) for q in stats["popular_queries"]]
    assert popular == [("count", 3.0, True), ("list", 3.0, True), ("get", 1.0, False)]
    assert stats["popular_queries"][1]["spec"]["filters"] == LIST_ENG

    # A write through a repository moves the generation: every entry is now stale.
    await seed(session_factory, config, start=10)
    after = await run_json("stats", stack)
    assert after["generation"] > stats["generation"]
    assert after["entries"]["total"] == after["entries"]["stale"] == 3
    assert after["entries"]["current"] == 0


async def test_stats_prints_tables_without_json(
    session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory, times=2)

    status, out, err = await run(*cache_args("stats", stack, "--plain"))

    assert (status, err) == (0, "")
    assert f"Cache of users ({MODEL})" in out
    assert f"{stack.prefix}:v1:{{users}}:*" in out
    assert "list(filters={'department': 'eng'}" in out
    assert "count(filters={'is_active': True})" in out
    # Where hit and miss counts are, since they are not here:
    assert "cache_config.stats()" in " ".join(out.split())


async def test_stats_of_a_model_never_cached(stack: CacheStack) -> None:
    stats = await run_json("stats", stack)
    assert stats["generation"] is None
    assert stats["entries"]["total"] == 0
    assert stats["popular_queries"] == []


# -- invalidate ----------------------------------------------------------------------------


async def change_behind_the_cache(factory: Factory) -> None:
    # Raw SQL on the connection: no repository or session write, so nothing is invalidated.
    async with factory() as session, session.begin():
        connection = await session.connection()
        await connection.execute(text("UPDATE users SET salary = 99 WHERE department = 'eng'"))


async def test_invalidate_makes_the_next_read_of_every_process_a_miss(
    session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    first = await read(config, session_factory)
    await change_behind_the_cache(session_factory)
    cached = await read(config, session_factory)
    assert cached["hits"] == 2
    assert cached["eng"] == first["eng"]  # the cache still serves the old salaries
    assert all(salary is None for _, salary in cached["eng"])

    report = await run_json("invalidate", stack)

    assert report == {
        "class": MODEL,
        "model": "users",
        "pattern": "*",
        "deleted": 2,
        "generation": await raw_generation(stack),
    }
    fresh = await read(config, session_factory)
    assert (fresh["hits"], fresh["misses"]) == (0, 2)
    assert all(salary == 99 for _, salary in fresh["eng"])
    # And another process (a config of its own) too.
    other = await read(app_config(stack), session_factory)
    assert other["eng"] == fresh["eng"]


async def test_invalidate_a_pattern_deletes_those_entries_and_retires_the_others(
    session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory)
    await change_behind_the_cache(session_factory)

    status, out, err = await run(*cache_args("invalidate", stack, "--pattern", "list:*"))

    assert (status, err) == (0, "")
    assert "deleted 1 entries matching 'list:*'" in " ".join(out.split())
    keys = await stack.keys(config)
    kinds = {key.split(":")[3] for key in keys if ":~" not in key}
    assert kinds == {"count"}  # the list entry is gone, the count entry is left...
    fresh = await read(config, session_factory)
    assert (fresh["hits"], fresh["misses"]) == (0, 2)  # ...but not served: stale
    assert all(salary == 99 for _, salary in fresh["eng"])


# -- warm ----------------------------------------------------------------------------------


async def test_warm_fills_the_popular_queries_so_the_next_reads_are_hits(
    db_url: str, session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory, times=3)
    await seed(session_factory, config, start=10)  # a write: every entry is stale

    status, out, err = await run(
        *cache_args("warm", stack, "--json", "--min-uses", "2", "--database-url", db_url)
    )

    assert (status, err) == (0, ""), err
    report = json.loads(out)
    assert (report["warmed"], report["already_cached"], report["failed"]) == (2, 0, 0)
    assert sorted((q["operation"], q["outcome"], q["score"]) for q in report["queries"]) == [
        ("count", "warmed", 3.0),
        ("list", "warmed", 3.0),
    ]
    assert report["duration_seconds"] > 0
    # The warm aged the scores (decay_factor 0.5), as repo.warm_cache() does.
    stats = await run_json("stats", stack)
    assert sorted(q["score"] for q in stats["popular_queries"]) == [1.5, 1.5]
    assert stats["entries"]["current"] == 2
    # Another process's first reads are hits, with the rows the write added.
    warmed = await read(app_config(stack), session_factory)
    assert (warmed["hits"], warmed["misses"]) == (2, 0)
    assert len(warmed["eng"]) == 10


async def test_warm_reports_a_query_it_could_not_replay_and_fails(
    db_url: str, session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory, times=2)
    # A popular query the model cannot run any more (a column since dropped), as an older
    # release of the application would have recorded it.
    client = stack.redis_client()
    assert client is not None
    base = f"{stack.prefix}:v1:{{users}}"
    await client.zadd(f"{base}:~usage", {"gone": 50})
    spec = b'{"filters":{"nickname":"x"},"operation":"list"}'
    await client.hset(f"{base}:~usage-specs", "gone", spec)

    status, out, err = await run(
        *cache_args("warm", stack, "--plain", "--min-uses", "2", "--database-url", db_url)
    )

    assert status == 1, out + err
    assert err == ""
    flat = " ".join(out.split())
    assert "0 warmed, 2 already cached, 1 failed" in flat  # the other two were current
    assert "InvalidFilterError" in flat
    assert "nickname" in flat
    assert "Traceback" not in out


# -- as a child process --------------------------------------------------------------------


async def child(
    *args: str, console_script: bool = False, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    program = (
        [str(Path(sys.executable).parent / "baserepo")]
        if console_script
        else [
            sys.executable,
            "-m",
            "baserepo",
        ]
    )
    process = await asyncio.create_subprocess_exec(
        *program,
        *args,
        cwd=PROJECT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_each_command_runs_as_a_program(
    db_url: str, session_factory: Factory, stack: CacheStack
) -> None:
    config = app_config(stack)
    await seed(session_factory, config)
    await read(config, session_factory, times=2)
    await change_behind_the_cache(session_factory)

    status, out, err = await child(*cache_args("stats", stack, "--json"))
    assert (status, err) == (0, "")
    assert json.loads(out)["entries"]["current"] == 2

    status, out, err = await child(*cache_args("invalidate", stack, "--json"), console_script=True)
    assert (status, err) == (0, "")
    assert json.loads(out)["deleted"] == 2

    status, out, err = await child(
        *cache_args("warm", stack, "--json", "--min-uses", "2", "--database-url", db_url)
    )
    assert (status, err) == (0, ""), err
    assert json.loads(out)["warmed"] == 2
    warmed = await read(app_config(stack), session_factory)
    assert (warmed["hits"], warmed["misses"]) == (2, 0)
    assert all(salary == 99 for _, salary in warmed["eng"])  # stored after the change


# -- failures: one line and a documented status ---------------------------------------------


def assert_one_line(err: str, command: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"baserepo cache {command}: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("tests.nowhere:User", "no module named 'tests.nowhere'"),
        ("tests.models:Nobody", "tests.models has no attribute 'Nobody'"),
        ("tests.models:UserCreate", "is not a mapped SQLAlchemy model class"),
        ("tests.models", "is not module:Class"),
    ],
)
async def test_a_model_that_is_not_there_exits_4(model: str, message: str) -> None:
    status, out, err = await run("cache", "stats", model, "--redis-url", REDIS_URL)
    assert (status, out) == (4, "")
    assert_one_line(err, "stats")
    assert message in err


async def test_a_redis_with_nothing_listening_exits_3() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    for command in ("stats", "invalidate"):
        status, out, err = await run("cache", command, MODEL, "--redis-url", url, "--json")
        assert (status, out) == (3, "")
        assert_one_line(err, command)
        assert "Redis unreachable at redis://:***@127.0.0.1:" in err
        assert "hunter2" not in err


async def test_the_redis_url_comes_from_the_environment(stack: CacheStack) -> None:
    args = ("cache", "stats", MODEL, "--key-prefix", stack.prefix, "--json")
    environment = {k: v for k, v in os.environ.items() if k != "BASEREPO_REDIS_URL"}
    status, out, err = await child(*args, env=environment)
    assert (status, out) == (2, "")  # no URL at all: a usage error
    assert_one_line(err, "stats")
    assert "BASEREPO_REDIS_URL" in err

    status, out, err = await child(*args, env={**environment, "BASEREPO_REDIS_URL": REDIS_URL})
    assert (status, err) == (0, "")
    assert json.loads(out)["keys_base"] == f"{stack.prefix}:v1:{{users}}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379/0", "bad Redis URL"),
        ("redis://127.0.0.1:port/0", "bad Redis URL <unparsable URL>"),
    ],
)
async def test_a_bad_redis_url_exits_2(url: str, message: str) -> None:
    status, out, err = await run("cache", "stats", MODEL, "--redis-url", url)
    assert (status, out) == (2, "")
    assert_one_line(err, "stats")
    assert message in err


@pytest.mark.parametrize(
    ("database_url", "status", "message"),
    [
        ("not a url", 2, "bad database URL"),
        ("nosuchdb+nodriver://x/y", 2, "bad database URL"),
        (f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x", 5, "database unreachable"),
    ],
)
async def test_warm_with_a_bad_or_unreachable_database(
    database_url: str, status: int, message: str, stack: CacheStack
) -> None:
    got, out, err = await run(*cache_args("warm", stack, "--database-url", database_url))
    assert (got, out) == (status, "")
    assert_one_line(err, "warm")
    assert message in err


async def test_an_empty_pattern_is_a_usage_error(stack: CacheStack) -> None:
    status, out, err = await run(*cache_args("invalidate", stack, "--pattern", ""))
    assert (status, out) == (2, "")
    assert_one_line(err, "invalidate")


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["cache", "stats", "--help"])
    assert exited.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for line in (
        "0 done",
        "2 usage error",
        "3 Redis unreachable",
        "4 the model (module:Class) was not found",
        "5 the database unreachable",
    ):
        assert line in out


async def test_a_redis_that_does_not_answer_exits_3_within_the_timeout(
    spare_redis: RedisServer,
) -> None:
    spare_redis.pause()  # the port is open, nothing answers
    try:
        started = time.monotonic()
        url = f"redis://127.0.0.1:{spare_redis.port}/0"
        status, out, err = await run(
            "cache", "stats", MODEL, "--redis-url", url, "--timeout", "0.5"
        )
        elapsed = time.monotonic() - started
    finally:
        spare_redis.resume()
    assert (status, out) == (3, "")
    assert_one_line(err, "stats")
    assert "Redis unreachable" in err
    assert elapsed < 5
