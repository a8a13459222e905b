"""What a PostgreSQL user might use instead of baserepo: raw asyncpg three ways, SQLAlchemy's
ORM two ways, advanced-alchemy's repository, Tortoise ORM; and the single Core statements that
``bulk_update`` / ``bulk_delete`` are measured against. (Django runs in its own process:
``bench/harness/django_bulk.py``.)"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from .data import COLUMNS, SALARY_CUTOFF, BenchStaff, BenchUser, Clock, Outcome, as_tuple

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

TABLE = BenchUser.__tablename__
COLUMN_LIST = ", ".join(COLUMNS)
UNNEST_BATCH = 1_000
UNNEST_SQL = (
    f"INSERT INTO {TABLE} ({COLUMN_LIST}) "
    "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::int[], "
    "$5::bool[], $6::timestamp[]) RETURNING id"
)
STAGE_SQL = (
    "CREATE TEMP TABLE bench_stage (ord int, name varchar, email varchar, department varchar, "
    "salary int, is_active bool, created_at timestamp) ON COMMIT DROP"
)
FROM_STAGE_SQL = (
    f"INSERT INTO {TABLE} ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM bench_stage "
    "ORDER BY ord RETURNING id"
)


class RawAsyncpg:
    """One asyncpg connection, held for the whole run like a pooled one."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.can_checkpoint = True

    async def copy(self, rows: list[dict[str, Any]]) -> Outcome:
        """``copy_records_to_table``: no ids back, the practical limit from Python."""
        with Clock() as clock:
            records = list(map(as_tuple, rows))
            async with self.conn.transaction():
                await self.conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
        return Outcome(clock.seconds, len(records), None)

    async def copy_quietly(self, rows: list[dict[str, Any]], table: str = TABLE) -> None:
        """Untimed loading (pre-existing rows, the update/delete table)."""
        await self.conn.copy_records_to_table(
            table, records=list(map(as_tuple, rows)), columns=COLUMNS
        )

    async def unnest(self, rows: list[dict[str, Any]]) -> Outcome:
        """``INSERT ... SELECT FROM unnest($1::varchar[], ...) RETURNING id``, 1,000 rows each."""
        ids: list[int] = []
        with Clock() as clock:
            async with self.conn.transaction():
                for start in range(0, len(rows), UNNEST_BATCH):
                    tuples = map(as_tuple, rows[start : start + UNNEST_BATCH])
                    columns = list(zip(*tuples, strict=True))
                    ids += [r[0] for r in await self.conn.fetch(UNNEST_SQL, *columns)]
        return Outcome(clock.seconds, len(ids), ids)

    async def copy_temp(self, rows: list[dict[str, Any]]) -> Outcome:
        """COPY into a temp table, then ``INSERT ... SELECT ... ORDER BY ord RETURNING id``."""
        with Clock() as clock:
            records = [(i, *as_tuple(r)) for i, r in enumerate(rows)]
            async with self.conn.transaction():
                await self.conn.execute(STAGE_SQL)
                await self.conn.copy_records_to_table(
                    "bench_stage", records=records, columns=("ord", *COLUMNS)
                )
                ids = [r[0] for r in await self.conn.fetch(FROM_STAGE_SQL)]
        return Outcome(clock.seconds, len(ids), ids)

    async def checkpoint(self) -> None:
        """Untimed, before each call: ANALYZE, because a production table has planner
        statistics (autovacuum keeps them) and one loaded a second ago does not, which
        makes PostgreSQL sort every match of a keyset batch instead of walking the primary
        key; then write dirty buffers out, so that a checkpoint forced by the previous
        calls' WAL does not land inside the next call's timing."""
        await self.conn.execute("ANALYZE")
        if self.can_checkpoint:
            try:
                await self.conn.execute("CHECKPOINT")
            except asyncpg.InsufficientPrivilegeError:
                self.can_checkpoint = False

    async def count(self, table: str = TABLE) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table}"))

    async def left_unchanged(self, change: str) -> int:
        """Rows the filter matches that a change left as they were (must be 0)."""
        condition = {
            "update": "is_active",
            "soft_delete": "deleted_at IS NULL",
            "delete": "true",
        }[change]
        return int(
            await self.conn.fetchval(
                f"SELECT count(*) FROM {BenchStaff.__tablename__} "
                f"WHERE salary < {SALARY_CUTOFF} AND {condition}"
            )
        )

    async def analyze(self, table: str) -> None:
        await self.conn.execute(f"ANALYZE {table}")

    async def emails_of(self, ids: list[int]) -> dict[int, str]:
        found = await self.conn.fetch(
            f"SELECT id, email FROM {TABLE} WHERE id = ANY($1::int[])", ids
        )
        return {r["id"]: r["email"] for r in found}


class SqlAlchemyOrm:
    """SQLAlchemy 2.x's own ways to insert with ids back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_all(self, rows: list[dict[str, Any]]) -> Outcome:
        """``session.add_all([Model(**row) ...])`` + ``flush()`` + ``commit()``."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            await session.connection()  # connect before the clock starts
            with Clock() as clock:
                objects = [BenchUser(**r) for r in rows]
                session.add_all(objects)
                await session.flush()
                ids = [o.id for o in objects]
                await session.commit()
        return Outcome(clock.seconds, len(ids), ids)

    async def insert_returning(self, rows: list[dict[str, Any]]) -> Outcome:
        """ORM bulk ``insert(Model).returning(Model.id, sort_by_parameter_order=True)``."""
        statement = insert(BenchUser).returning(BenchUser.id, sort_by_parameter_order=True)
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            await session.connection()
            with Clock() as clock:
                ids = list((await session.execute(statement, rows)).scalars())
                await session.commit()
        return Outcome(clock.seconds, len(ids), ids)


class _UserRepository(SQLAlchemyAsyncRepository[BenchUser]):
    model_type = BenchUser


class AdvancedAlchemy:
    """advanced-alchemy's ``SQLAlchemyAsyncRepository.add_many``, as its docs show it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_many(self, rows: list[dict[str, Any]]) -> Outcome:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            repository = _UserRepository(session=session)
            await session.connection()
            with Clock() as clock:
                added = await repository.add_many([BenchUser(**r) for r in rows], auto_commit=True)
                ids = [o.id for o in added]
        return Outcome(clock.seconds, len(ids), ids)


class Tortoise:
    """Tortoise ORM's ``Model.bulk_create`` (it does not fill in integer primary keys)."""

    def __init__(self, url: str) -> None:
        # postgresql+asyncpg://user@host:port/db -> asyncpg://user@host:port/db
        self.url = "asyncpg://" + url.split("://", 1)[1]

    async def open(self) -> None:
        from tortoise import Tortoise as _Tortoise

        await _Tortoise.init(
            db_url=self.url,
            modules={"models": ["alternatives.tortoise_models"]},
            use_tz=False,
        )

    async def close(self) -> None:
        from tortoise import Tortoise as _Tortoise

        await _Tortoise.close_connections()

    async def bulk_create(self, rows: list[dict[str, Any]]) -> Outcome:
        from .tortoise_models import TortoiseUser

        with Clock() as clock:
            objects = [TortoiseUser(**r) for r in rows]
            await TortoiseUser.bulk_create(objects)
        return Outcome(clock.seconds, len(objects), None)


class CoreStatements:
    """The one statement a user writes by hand: ``UPDATE/DELETE ... WHERE ... RETURNING id``.

    Each carries the same ``deleted_at IS NULL`` condition that baserepo adds on a model with
    soft delete, so both sides select the same rows with the same plan.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.where = (BenchStaff.salary < SALARY_CUTOFF, BenchStaff.deleted_at.is_(None))

    async def _run(self, statement: Any) -> Outcome:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")  # connect before the clock starts
            await conn.commit()
            with Clock() as clock:
                ids = list((await conn.execute(statement)).scalars())
                await conn.commit()
        return Outcome(clock.seconds, len(ids), ids)

    async def update(self, _rows: list[dict[str, Any]]) -> Outcome:
        statement = update(BenchStaff).where(*self.where).values(is_active=False)
        return await self._run(statement.returning(BenchStaff.id))

    async def soft_delete(self, _rows: list[dict[str, Any]]) -> Outcome:
        now = datetime.now()  # the column is a naive timestamp
        statement = update(BenchStaff).where(*self.where).values(deleted_at=now)
        return await self._run(statement.returning(BenchStaff.id))

    async def delete(self, _rows: list[dict[str, Any]]) -> Outcome:
        return await self._run(delete(BenchStaff).where(*self.where).returning(BenchStaff.id))
