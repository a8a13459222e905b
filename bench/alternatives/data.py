"""The rows every method inserts, the tables they go to, and what a timed call reports."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine

COLUMNS = ("name", "email", "department", "salary", "is_active", "created_at")
"""Insert order of the columns, for the raw drivers' statements and tuples."""
as_tuple = itemgetter(*COLUMNS)
"""A row dict as a tuple in ``COLUMNS`` order (C speed, as a careful raw-driver user writes)."""

DEPARTMENTS = ("engineering", "sales", "marketing", "support")
EPOCH = datetime(2024, 1, 1)
SALARY_CUTOFF = 48_000
"""``salary < SALARY_CUTOFF`` matches 18 of every 60 rows: the ~30% updates and deletes touch."""
CONFLICT_EVERY = 10
"""For ``ignore_conflicts``: every 10th row already exists before the call."""


def row(i: int, tag: str) -> dict[str, Any]:
    return {
        "name": f"User {i}",
        "email": f"{tag}.user{i}@example.com",
        "department": DEPARTMENTS[i % 4],
        "salary": 30_000 + i % 60 * 1_000,
        "is_active": i % 7 != 0,
        "created_at": EPOCH + timedelta(seconds=i),
    }


def generate_rows(count: int, tag: str) -> list[dict[str, Any]]:
    """The same ``count`` rows for every method (``tag`` only changes the emails)."""
    return [row(i, tag) for i in range(count)]


async def stream_rows(count: int, tag: str) -> AsyncIterator[dict[str, Any]]:
    """The same rows as an async generator, never more than one alive at a time."""
    for i in range(count):
        yield row(i, tag)


def conflicting(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows inserted before an ``ignore_conflicts`` call, so that 10% of it conflicts."""
    return rows[::CONFLICT_EVERY]


def touched(rows: list[dict[str, Any]]) -> int:
    """How many rows ``salary < SALARY_CUTOFF`` matches."""
    return sum(1 for r in rows if r["salary"] < SALARY_CUTOFF)


class Base(DeclarativeBase):
    pass


class _Columns:
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(255), unique=True)
    department: Mapped[str | None] = mapped_column(String(50))
    salary: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class BenchUser(_Columns, Base):
    """The table every create method writes to (Django has its own, with the same columns)."""

    __tablename__ = "bench_users"


class BenchStaff(_Columns, Base):
    """The same columns plus ``deleted_at``: the table of the update and delete runs."""

    __tablename__ = "bench_staff"

    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


async def fresh_table(engine: AsyncEngine, model: type[Base]) -> None:
    table = model.__table__
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: table.drop(sync, checkfirst=True))
        await conn.run_sync(lambda sync: table.create(sync))


async def drop_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: Base.metadata.drop_all(sync))


@dataclass(frozen=True, slots=True)
class Outcome:
    """One timed call: seconds on the clock and what it says it did, for checking."""

    seconds: float
    written: int
    """Rows the method reports inserted, updated or deleted."""
    ids: list[Any] | None
    """The ids it handed back (None: the method returns no ids)."""


class Clock:
    """``with Clock() as clock: ...`` then ``clock.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Clock:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
