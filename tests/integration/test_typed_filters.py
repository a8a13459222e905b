"""Filter values are checked against their column and converted before any SQL, on every database.

Before this, each database answered a badly typed filter its own way: PostgreSQL refused
``salary__gte="300"`` with a driver error (RepositoryDatabaseError, an HTTP 500), SQLite compared
a number with a text, and MariaDB coerced ``'abc'`` to ``0``, so
``bulk_delete({"salary__gte": "abc"}, soft_delete=False)`` deleted every row.
"""

import enum
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Date, DateTime, Enum, Float, Integer, Uuid
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository, CacheConfig, InvalidFilterError
from tests.models import Article, User

Factory = async_sessionmaker[AsyncSession]

# name, salary, last_login (naive UTC). Carl logged in at 01:00 UTC on June 1st: before
# 02:00+02:00 read as a naive wall time, after it read as the instant it is (00:00 UTC).
PEOPLE: list[tuple[str, int, datetime]] = [
    ("Ann", 100, datetime(2024, 5, 30, 12, 0)),
    ("Ben", 300, datetime(2024, 5, 31, 23, 30)),
    ("Carl", 500, datetime(2024, 6, 1, 1, 0)),
    ("Dora", 700, datetime(2024, 6, 2, 8, 0)),
]
ARTICLES: list[tuple[str, Decimal]] = [("low", Decimal("1.25")), ("high", Decimal("1.75"))]


@pytest.fixture
async def people(session_factory: Factory) -> None:
    async with session_factory() as writer, writer.begin():
        writer.add_all(User(name=n, salary=s, last_login=at) for n, s, at in PEOPLE)
        writer.add_all(Article(title=t, score=score) for t, score in ARTICLES)


def names(users: list[User]) -> set[str]:
    return {user.name for user in users}


# filters given as a client would (query-string text, another time zone) -> names expected
CONVERTED: dict[str, tuple[dict[str, Any], set[str]]] = {
    "integer from text": ({"salary__gte": "500"}, {"Carl", "Dora"}),
    "integers in a list": ({"salary__in": ["100", 700]}, {"Ann", "Dora"}),
    "integer range": ({"salary__range": ("300", "500")}, {"Ben", "Carl"}),
    "ISO datetime": ({"last_login__lt": "2024-06-01T00:00:00"}, {"Ann", "Ben"}),
    "ISO date for a datetime": ({"last_login__gte": "2024-06-01"}, {"Carl", "Dora"}),
    "aware ISO string, naive column": (
        {"last_login__lt": "2024-06-01T02:00:00+02:00"},
        {"Ann", "Ben"},
    ),
    "aware datetime, naive column": (
        {"last_login__lt": datetime(2024, 6, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))},
        {"Ann", "Ben"},
    ),
    "boolean from text": ({"is_active": "true", "salary__lt": 200}, {"Ann"}),
}


@pytest.mark.parametrize("case", list(CONVERTED))
async def test_a_value_of_another_spelling_is_converted_for_its_column(
    case: str, session: AsyncSession, people: None
) -> None:
    filters, expected = CONVERTED[case]
    repo = BaseRepository(User, session)

    assert names(await repo.list(filters)) == expected
    assert await repo.count(filters) == len(expected)
    assert await repo.exists(filters)


async def test_a_numeric_column_takes_a_decimal_string(session: AsyncSession, people: None) -> None:
    repo = BaseRepository(Article, session)
    assert [a.title for a in await repo.list(score__gte="1.5")] == ["high"]
    assert await repo.count(score__lt=1.5) == 1  # a float, converted to Decimal("1.5")


# key, value, what the message must name besides the key and the value (or the item at fault)
REFUSED: list[tuple[str, Any, str]] = [
    ("salary__gte", "abc", "users.salary (Integer)"),
    ("salary", True, "users.salary (Integer)"),
    ("salary__lt", 2**40, "users.salary (Integer)"),
    ("salary__in", ["100", "x"], "item 1: 'x' is not a valid value for users.salary (Integer)"),
    ("salary__range", ("100", "lots"), "high bound: 'lots' is not a valid value for users.salary"),
    ("name", 0, "users.name (String(length=100))"),  # MariaDB: every non-numeric name = 0
    ("last_login__lt", "yesterday", "users.last_login (DateTime)"),
    ("last_login__lt", 1_700_000_000, "users.last_login (DateTime)"),
    ("is_active", "maybe", "users.is_active (Boolean)"),
    ("salary__contains", "5", "users.salary (Integer)"),
]


@pytest.mark.parametrize(("key", "value", "column"), REFUSED)
async def test_a_value_that_does_not_fit_is_refused_before_any_sql(
    key: str, value: Any, column: str, session: AsyncSession, people: None, count_queries: Any
) -> None:
    repo = BaseRepository(User, session)

    for read in (repo.list, repo.count, repo.exists):
        with count_queries() as log, pytest.raises(InvalidFilterError) as caught:
            await read({key: value})
        assert log.statements == []
        assert caught.value.key == key
        assert repr(key) in str(caught.value)
        assert column in str(caught.value)
        if not isinstance(value, list | tuple):
            assert repr(value) in str(caught.value)


async def test_a_non_finite_number_is_refused_for_a_numeric_column(
    session: AsyncSession, people: None
) -> None:
    with pytest.raises(InvalidFilterError, match=r"articles\.score \(Numeric"):
        await BaseRepository(Article, session).list(score__gte="NaN")


async def test_bulk_delete_with_a_value_that_does_not_fit_deletes_nothing(
    session: AsyncSession, session_factory: Factory, people: None
) -> None:
    # On MariaDB this deleted all rows: the server compared salary >= 'abc' as salary >= 0.
    repo = BaseRepository(User, session)

    refused: InvalidFilterError | None = None
    try:
        await repo.bulk_delete({"salary__gte": "abc"}, soft_delete=False)
    except InvalidFilterError as error:
        refused = error

    async with session_factory() as reader:
        assert await BaseRepository(User, reader).count() == len(PEOPLE)
    assert refused is not None
    assert refused.key == "salary__gte"


async def test_bulk_update_with_a_value_that_does_not_fit_changes_nothing(
    session: AsyncSession, session_factory: Factory, people: None
) -> None:
    repo = BaseRepository(User, session)

    with pytest.raises(InvalidFilterError, match="name"):
        await repo.bulk_update({"name": 0}, {"status": "touched"})

    async with session_factory() as reader:
        assert await BaseRepository(User, reader).count(status="touched") == 0


async def test_bulk_update_and_delete_convert_their_filters(
    session: AsyncSession, session_factory: Factory, people: None
) -> None:
    repo = BaseRepository(User, session)

    updated = await repo.bulk_update({"salary__gte": "500"}, {"status": "senior"})
    deleted = await repo.bulk_delete(
        {"last_login__lt": "2024-06-01T02:00:00+02:00"}, soft_delete=False
    )

    assert updated.success_count == 2
    assert deleted.success_count == 2
    async with session_factory() as reader:
        left = await BaseRepository(User, reader).list(order_by="name")
    assert [(u.name, u.status) for u in left] == [("Carl", "senior"), ("Dora", "senior")]


async def test_one_query_in_two_spellings_is_one_cache_entry(
    session: AsyncSession, people: None, count_queries: Any
) -> None:
    config = CacheConfig()  # in-process backend
    repo = BaseRepository(User, session, config)

    first = await repo.list(salary__gte="500", last_login__lt="2024-06-03")
    with count_queries() as log:
        again = await repo.list(salary__gte=500, last_login__lt=datetime(2024, 6, 3, tzinfo=UTC))

    assert log.statements == []
    assert names(again) == names(first) == {"Carl", "Dora"}
    stats = repo.cache_stats()
    assert stats is not None
    assert stats.hits == 1


# -- more column kinds, on a table of this module's own -------------------------------------


class Tier(enum.StrEnum):
    GOLD = "gold"
    SILVER = "silver"


class KindsBase(DeclarativeBase):
    pass


class Reading(KindsBase):
    __tablename__ = "baserepo_typed_readings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ratio: Mapped[float] = mapped_column(Float)
    tier: Mapped[Tier] = mapped_column(Enum(Tier))
    key: Mapped[uuid.UUID] = mapped_column(Uuid)


KEYS = [uuid.UUID(int=n) for n in (1, 2, 3)]
READINGS = [
    (date(2024, 1, 1), datetime(2024, 1, 1, 12, tzinfo=UTC), 0.25, Tier.GOLD, KEYS[0]),
    (date(2024, 2, 1), datetime(2024, 2, 1, 12, tzinfo=UTC), 0.5, Tier.SILVER, KEYS[1]),
    (date(2024, 3, 1), datetime(2024, 3, 1, 12, tzinfo=UTC), 0.75, Tier.GOLD, KEYS[2]),
]


@pytest.fixture
async def readings(engine: AsyncEngine, session_factory: Factory) -> None:
    # Recreated, never dropped afterwards: the test's session may still hold a lock on it
    # then; the run's database goes at the end anyway (as the `tables` fixture does).
    async with engine.begin() as conn:
        await conn.run_sync(KindsBase.metadata.drop_all)
        await conn.run_sync(KindsBase.metadata.create_all)
    async with session_factory() as writer, writer.begin():
        writer.add_all(
            Reading(id=i, day=d, at=at, ratio=r, tier=t, key=k)
            for i, (d, at, r, t, k) in enumerate(READINGS, start=1)
        )


# filters as a client spells them -> ids expected
KIND_CASES: dict[str, tuple[dict[str, Any], set[int]]] = {
    "ISO date": ({"day__gte": "2024-02-01"}, {2, 3}),
    "ISO dates in a list": ({"day__in": ["2024-01-01", "2024-03-01"]}, {1, 3}),
    "naive ISO datetime, aware column (UTC)": ({"at__lt": "2024-02-01T12:00:01"}, {1, 2}),
    "aware ISO datetime, aware column": ({"at__lt": "2024-02-01T13:00:00+02:00"}, {1}),
    "float from text": ({"ratio__gt": "0.3"}, {2, 3}),
    "enum by value": ({"tier": "gold"}, {1, 3}),
    "enum by stored name": ({"tier": "SILVER"}, {2}),
    "uuid from text": ({"key": str(KEYS[1])}, {2}),
    "uuids from hex": ({"key__in": [KEYS[0].hex, KEYS[2].hex]}, {1, 3}),
}


@pytest.mark.parametrize("case", list(KIND_CASES))
async def test_every_column_kind_converts_alike(
    case: str, session: AsyncSession, readings: None
) -> None:
    filters, expected = KIND_CASES[case]
    repo = BaseRepository(Reading, session)
    assert {r.id for r in await repo.list(filters)} == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("day", "2024-13-01"),
        ("day", 20240101),
        ("ratio__lt", "fast"),
        ("ratio__lt", float("nan")),
        ("tier", "bronze"),
        ("key", "not-a-uuid"),
        ("tier__startswith", "g"),
        ("key__contains", "1"),
    ],
)
async def test_every_column_kind_refuses_alike(
    key: str, value: Any, session: AsyncSession, readings: None
) -> None:
    repo = BaseRepository(Reading, session)
    with pytest.raises(InvalidFilterError) as caught:
        await repo.count({key: value})
    assert caught.value.key == key
    assert f"baserepo_typed_readings.{key.split('__')[0]}" in str(caught.value)
