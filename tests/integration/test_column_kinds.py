"""Column kinds and the datetime rule on every database, values read back from a fresh session.

The same records go to SQLite, PostgreSQL and MariaDB through every bulk path (PostgreSQL:
COPY, the array statement when keys are given, SQLAlchemy's executemany for a table with a
JSON column) and through single create/update: each stored value must be the same instant.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import BaseRepository, FailureKind
from tests.conftest import StatementLog
from tests.kinds_models import Emulated, KindsBase, Moment, MomentDoc, Sample

PLUS_TWO = timezone(timedelta(hours=2))
NOON_PLUS_TWO = datetime(2024, 1, 1, 12, tzinfo=PLUS_TWO)  # 10:00 UTC
TEN_UTC = datetime(2024, 1, 1, 10)
NOON_UTC = datetime(2024, 1, 1, 12)

# (at, at_tz) given -> the UTC instants stored (naive here; read back as naive or UTC).
MOMENTS: list[tuple[dict[str, Any], tuple[datetime | None, datetime | None]]] = [
    ({"at": NOON_PLUS_TWO, "at_tz": NOON_PLUS_TWO}, (TEN_UTC, TEN_UTC)),
    # A naive value for an aware column is taken as UTC.
    ({"at": NOON_UTC, "at_tz": NOON_UTC}, (NOON_UTC, NOON_UTC)),
    ({"at": TEN_UTC.replace(tzinfo=UTC), "at_tz": TEN_UTC.replace(tzinfo=UTC)}, (TEN_UTC, TEN_UTC)),
    ({"at": None, "at_tz": None}, (None, None)),
]


KIND_TABLES = [t.__table__ for t in (Sample, Moment, MomentDoc, Emulated)]  # not Everything


@pytest.fixture
async def kinds_tables(engine: AsyncEngine, tables: None) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(KindsBase.metadata.drop_all, tables=KIND_TABLES)
        await conn.run_sync(KindsBase.metadata.create_all, tables=KIND_TABLES)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(KindsBase.metadata.drop_all, tables=KIND_TABLES)


def as_utc(value: datetime | None) -> datetime | None:
    """The instant a stored value stands for, naive UTC (an aware column read back without
    its zone on SQLite and MariaDB holds UTC, by the rule)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


async def stored_moments(
    factory: async_sessionmaker[AsyncSession], model: Any, ids: list[Any]
) -> list[tuple[datetime | None, datetime | None]]:
    async with factory() as fresh:
        found = await fresh.execute(select(model.id, model.at, model.at_tz))
        rows = {r.id: (r.at, r.at_tz) for r in found}
    return [(as_utc(rows[i][0]), as_utc(rows[i][1])) for i in ids]


@pytest.mark.usefixtures("kinds_tables")
@pytest.mark.parametrize("path", ["copy", "keys given", "executemany"])
async def test_the_same_datetimes_are_the_same_instants_on_every_database_and_path(
    path: str, session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # Before: on PostgreSQL the COPY encoder raised a bare TypeError for the aware value
    # (after earlier batches had committed); SQLite and MariaDB stored its wall time.
    model = MomentDoc if path == "executemany" else Moment
    records = [dict(record) for record, _ in MOMENTS] * 2
    if path == "keys given":
        records = [{"id": 100 + i, **record} for i, record in enumerate(records)]

    result = await BaseRepository(model, session).bulk_create(records, batch_size=3)

    assert (result.success_count, result.error_count) == (len(records), 0), result.errors
    expected = [instants for _, instants in MOMENTS] * 2
    assert await stored_moments(session_factory, model, result.created_ids) == expected


@pytest.mark.usefixtures("kinds_tables")
async def test_create_update_and_bulk_update_follow_the_same_rule(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository(Moment, session)
    first = await repo.create({"at": NOON_PLUS_TWO, "at_tz": NOON_UTC})
    second = await repo.create({"at": NOON_UTC})
    third = await repo.create({"at": NOON_UTC})
    await repo.update(second.id, {"at": NOON_PLUS_TWO, "at_tz": NOON_PLUS_TWO})
    changed = await repo.bulk_update({"id": third.id}, {"at": NOON_PLUS_TWO, "at_tz": NOON_UTC})

    assert changed.success_count == 1
    assert await stored_moments(session_factory, Moment, [first.id, second.id, third.id]) == [
        (TEN_UTC, NOON_UTC),
        (TEN_UTC, TEN_UTC),
        (TEN_UTC, NOON_UTC),
    ]


SAMPLE = {
    "flag": True,
    "word": "twenty characters..",
    "body": "a longer text " * 20,
    "small": -(2**15),
    "big": 2**62,
    "ratio": 0.5,
    "amount": Decimal("12345678.91"),
    "at": datetime(2024, 2, 29, 23, 59, 59, 123456),
    "at_tz": datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC),
    "day": date(2024, 2, 29),
    "clock": time(13, 14, 15),
    "span": timedelta(days=3, seconds=7),
    "token": UUID("12345678-1234-5678-1234-567812345678"),
    "blob": b"\x01\x02 bytes",
}


@pytest.mark.usefixtures("kinds_tables")
@pytest.mark.parametrize("keys_given", [False, True], ids=["keys drawn", "keys given"])
async def test_every_kind_is_written_and_read_back_unchanged(
    keys_given: bool,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    count_queries: Callable[[], AbstractContextManager[StatementLog]],
) -> None:
    records = [{**SAMPLE, "small": i} for i in range(3)]
    if keys_given:
        records = [{"id": 10 + i, **record} for i, record in enumerate(records)]

    with count_queries() as log:
        result = await BaseRepository(Sample, session).bulk_create(records)

    assert result.success_count == 3, result.errors
    if session.bind.dialect.name == "postgresql":
        # Interval is a TypeDecorator: the table used to lose COPY and the arrays to
        # SQLAlchemy's executemany (INSERT ... VALUES).
        inserts = [s for s in log.statements if s.lstrip().startswith("INSERT")]
        if keys_given:
            assert inserts, log.statements
            assert all("unnest" in s for s in inserts), log.statements
        else:
            assert not inserts, log.statements  # COPY: no INSERT statement at all
            assert any("nextval" in s for s in log.statements)
    async with session_factory() as fresh:
        rows = (await fresh.execute(select(Sample).order_by(Sample.id))).scalars().all()
    for row, record in zip(rows, records, strict=True):
        read = {key: getattr(row, key) for key in record if key != "id"}
        read["at_tz"] = as_utc(read["at_tz"])
        wanted = {key: value for key, value in record.items() if key != "id"}
        wanted["at_tz"] = as_utc(wanted["at_tz"])
        assert read == wanted


@pytest.mark.usefixtures("kinds_tables")
@pytest.mark.parametrize(
    ("column", "value"),
    [("ratio", "abc"), ("ratio", "1.5"), ("span", "3 days"), ("span", 3600)],
)
async def test_values_a_kind_refuses_are_reported_and_never_written(
    column: str,
    value: Any,
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    # Before, on SQLAlchemy 2.1: Float and Interval accepted anything, so SQLite stored
    # "abc" in a FLOAT column and the other databases failed the whole batch.
    records = [{"word": "fine"}, {"word": "bad", column: value}, {"word": "fine too"}]

    result = await BaseRepository(Sample, session).bulk_create(records)

    assert result.success_count == 2
    [failure] = result.failures
    assert (failure.index, failure.kind) == (1, FailureKind.VALIDATION)
    assert column in failure.message
    async with session_factory() as fresh:
        words = set((await fresh.execute(select(Sample.word))).scalars())
    assert words == {"fine", "fine too"}


@pytest.mark.usefixtures("kinds_tables")
@pytest.mark.parametrize("ratio", [Decimal("sNaN"), 10**400], ids=["snan", "int_past_1e308"])
async def test_a_number_no_float_can_hold_fails_its_record_not_the_call(
    ratio: Any, session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # Both are numbers, but float() raises for them: before, the ValueError/OverflowError
    # of SQLite's bind processor or asyncpg's COPY encoder escaped the bulk call mid-way.
    records = [{"word": "before"}, {"word": "bad", "ratio": ratio}, {"word": "after"}]

    result = await BaseRepository(Sample, session).bulk_create(records, batch_size=1)

    assert (result.success_count, result.error_count) == (2, 1), result.errors
    assert result.failures[0].index == 1
    async with session_factory() as fresh:
        words = set((await fresh.execute(select(Sample.word))).scalars())
    assert words == {"before", "after"}


@pytest.mark.usefixtures("kinds_tables")
async def test_types_sqlalchemy_emulates_are_bound_by_sqlalchemy(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # Before, on PostgreSQL: COPY sent the UUID to a CHAR(32) column and the timedelta to a
    # timestamp column, and the batch failed.
    records = [{"token": SAMPLE["token"], "span": timedelta(days=2, seconds=5)}] * 2

    result = await BaseRepository(Emulated, session).bulk_create(records)

    assert result.success_count == 2, result.errors
    async with session_factory() as fresh:
        rows = (await fresh.execute(select(Emulated.token, Emulated.span))).all()
    assert [tuple(row) for row in rows] == [(SAMPLE["token"], timedelta(days=2, seconds=5))] * 2
