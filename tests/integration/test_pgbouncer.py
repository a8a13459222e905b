"""Every repository call through PgBouncer's transaction pooling, from several processes.

A real ``pgbouncer`` (``tests/pgbouncer.py``: ``pool_mode = transaction``, two server
connections) sits in front of the test database. Three application processes of eight
concurrent sessions each (``pgbouncer_worker.py``) run every repository call through it, with
either client setting docs/deployment.md gives: asyncpg's ``statement_cache_size=0``, or
SQLAlchemy's recipe of uuid statement names with ``NullPool``. Every client transaction lands on
one of the two server connections, where the previous clients' leftovers still are: a named
prepared statement left there by one process (asyncpg numbers them from 1 in every process)
makes the next process's statement of the same name fail, and a TEMP table left there is met
by later clients and application runs, with the column types it had when it was made.

Only the PostgreSQL backend has these tests; a missing ``pgbouncer`` fails them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baserepo import BaseRepository, create_engine
from tests.integration.pgbouncer_worker import CLIENTS, ticket_model
from tests.pgbouncer import POOL_SIZE, PgBouncer

PROJECT = Path(__file__).resolve().parents[2]
VENV_PYTHON = PROJECT / ".venv" / "bin" / "python"
PROCESSES = 3
SESSIONS = 8
WORKER_TIMEOUT_SECONDS = 240


async def run_processes(count: int, **args: Any) -> list[str]:
    """Start ``count`` worker processes at once; their failures (and crashes), all of them."""

    async def one(process: int) -> list[str]:
        child = await asyncio.create_subprocess_exec(
            str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable),
            "-m",
            "tests.integration.pgbouncer_worker",
            json.dumps({**args, "process": process}),
            cwd=PROJECT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), WORKER_TIMEOUT_SECONDS)
        lines = out.decode().strip().splitlines()
        try:
            failures: list[str] = json.loads(lines[-1])
        except (IndexError, ValueError):
            return [f"process {process} crashed ({child.returncode}): {err.decode()[-2000:]}"]
        return failures

    reports = await asyncio.gather(*(one(process) for process in range(count)))
    return [failure for report in reports for failure in report]


async def create_tickets(engine: AsyncEngine, code_length: int) -> None:
    ticket = ticket_model(code_length)
    async with engine.begin() as conn:
        await conn.run_sync(ticket.metadata.drop_all)
        await conn.run_sync(ticket.metadata.create_all)


TEMP_TABLES = text("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()")


async def server_leftovers(bouncer: PgBouncer) -> list[tuple[str, str]]:
    """What the clients left on PgBouncer's server connections: named prepared statements of
    asyncpg's own numbering and TEMP tables. Holds every server connection at once (one open
    transaction each), so each of them is looked at."""
    engine = create_engine(bouncer.url, connect_args={"statement_cache_size": 0})
    found: list[tuple[str, str]] = []
    try:
        connections = [await engine.connect() for _ in range(POOL_SIZE)]
        try:
            for conn in connections:
                statements = await conn.execute(
                    text(
                        "SELECT name || ': ' || left(statement, 100) FROM pg_prepared_statements "
                        "WHERE name LIKE '\\_\\_asyncpg\\_stmt\\_%'"
                    )
                )
                found += [("prepared statement", name) for name in statements.scalars()]
                temp = await conn.execute(
                    text("SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema()")
                )
                found += [("temp table", name) for name in temp.scalars()]
        finally:
            for conn in connections:
                await conn.close()
    finally:
        await engine.dispose()
    return found


@pytest.mark.parametrize("client", CLIENTS)
async def test_every_call_from_three_processes_through_pgbouncer(
    pgbouncer: PgBouncer, engine: AsyncEngine, tables: None, client: str
) -> None:
    await create_tickets(engine, 64)
    failures = await run_processes(
        PROCESSES,
        url=pgbouncer.url,
        client=client,
        sessions=SESSIONS,
        scenario="every_call",
        code_length=64,
        run=client[:4],
    )
    assert failures == [], "\n".join(failures[:10])
    # Nothing of the library's own stays on a server connection for the next client.
    assert await server_leftovers(pgbouncer) == []


async def test_staging_table_takes_a_column_type_change_between_runs(
    pgbouncer: PgBouncer, engine: AsyncEngine, tables: None
) -> None:
    await create_tickets(engine, 64)
    first = await run_processes(
        2,
        url=pgbouncer.url,
        client=CLIENTS[0],
        sessions=4,
        scenario="staged",
        code_length=64,
        run="old",
    )
    assert first == [], "\n".join(first[:10])
    # The application is upgraded: a wider column, then new processes on the same PgBouncer,
    # whose server connections outlived the old processes.
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tickets ALTER COLUMN code TYPE varchar(200)"))
    second = await run_processes(
        2,
        url=pgbouncer.url,
        client=CLIENTS[0],
        sessions=4,
        scenario="staged",
        code_length=200,
        run="new",
    )
    assert second == [], "\n".join(second[:10])
    assert await server_leftovers(pgbouncer) == []


async def test_the_staging_table_lives_in_its_transaction_only(
    db_url: str, engine: AsyncEngine, tables: None
) -> None:
    # Directly on PostgreSQL, one pooled connection: what a transaction leaves on it is what
    # PgBouncer would hand to the next client.
    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("about the asyncpg COPY path's staging table")
    await create_tickets(engine, 64)
    ticket = ticket_model(64)
    records = [{"code": f"c{i}", "lane": 0} for i in range(50)]
    one_connection = create_engine(db_url, pool_size=1, max_overflow=0)
    try:
        async with AsyncSession(one_connection) as session:
            repo = BaseRepository(ticket, session)
            async with session.begin():
                # Several batches, two calls: one stage, shared within the transaction.
                first = await repo.bulk_create(records, batch_size=20, ignore_conflicts=True)
                more = [{"code": f"c{i}", "lane": 1} for i in range(10)]
                second = await repo.bulk_create(
                    records + more, batch_size=20, ignore_conflicts=True
                )
                during = await session.scalar(TEMP_TABLES)
            after = await session.scalar(TEMP_TABLES)
    finally:
        await one_connection.dispose()
    assert (first.success_count, first.error_count) == (50, 0)
    assert (second.success_count, second.error_count) == (10, 50)
    assert (during, after) == (1, 0)
