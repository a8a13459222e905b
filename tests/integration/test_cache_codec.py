"""Codec fidelity: a row served from the cache equals the row the database returns, column by
column, value and Python type alike, for every column type baserepo caches; on every
database and both cache backends.

A model with a column the codec cannot restore exactly is not cached at all: its reads still
work, straight from the database, and nothing is filled.
"""

from __future__ import annotations

import datetime as dt
import enum
import pathlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    String,
    Text,
    Time,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository
from tests.integration.cache_stack import (
    STACKS,
    CacheStack,
    assert_same_rows,
    assert_same_value,
    column_values,
    open_stack,
)

Factory = async_sessionmaker[AsyncSession]
CountQueries = Callable[[], AbstractContextManager[Any]]


class Base(DeclarativeBase):
    pass


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"
    BLUE = "b"


# MariaDB keeps whole seconds unless asked for microseconds (as tests/models.py does).
Naive = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Aware = DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6, timezone=True), "mysql", "mariadb"
)
TimeOfDay = Time().with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")


class Sample(Base):
    """One column of every supported type, each nullable so a row of NULLs checks None."""

    __tablename__ = "codec_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    naive: Mapped[dt.datetime | None] = mapped_column(Naive)
    aware: Mapped[dt.datetime | None] = mapped_column(Aware)
    day: Mapped[dt.date | None] = mapped_column(Date)
    at: Mapped[dt.time | None] = mapped_column(TimeOfDay)
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    ratio: Mapped[float | None] = mapped_column(Float)
    uid: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    color: Mapped[Color | None] = mapped_column(Enum(Color, name="codec_color"))
    doc: Mapped[Any] = mapped_column(JSON, nullable=True)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    span: Mapped[dt.timedelta | None] = mapped_column(Interval)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    big: Mapped[int | None] = mapped_column(BigInteger)
    body: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(50))


FULL = {
    "id": 1,
    "naive": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
    "aware": dt.datetime(2024, 2, 29, 23, 59, 58, 654321, tzinfo=dt.UTC),
    "day": dt.date(2024, 2, 29),
    "at": dt.time(7, 8, 9, 101112),
    "price": Decimal("12345678.90"),
    "ratio": 0.1,
    "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "color": Color.GREEN,
    "doc": {"name": "Ünïcødé ✓", "tags": ["a", "b"], "n": 3, "x": 1.5, "ok": True, "none": None},
    "blob": bytes(range(256)),
    "span": dt.timedelta(days=3, seconds=3723, microseconds=456789),
    "flag": True,
    "big": 2**62 + 12345,
    "body": "line one\nline two\t'quoted' \"double\" \\ back",
    "label": "plain",
}
EDGES = {
    "id": 2,
    "naive": dt.datetime(1999, 12, 31, 0, 0, 0),
    "aware": dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    "day": dt.date(1970, 1, 1),
    "at": dt.time(0, 0),
    "price": Decimal("-0.05"),
    "ratio": -1.25e-7,
    "uid": uuid.UUID(int=0),
    "color": Color.RED,
    "doc": [1, "two", [3.0], {}],
    "blob": b"",
    "span": dt.timedelta(seconds=1),
    "flag": False,
    "big": -(2**63),
    "body": "",
    "label": "",
}
NULLS: dict[str, Any] = {"id": 3} | {key: None for key in FULL if key != "id"}
ROWS = [FULL, EDGES, NULLS]


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[CacheStack]:
    async with open_stack(request.param) as opened:
        yield opened


@pytest.fixture
async def codec_factory(engine: AsyncEngine) -> AsyncIterator[Factory]:
    """This module's tables, fresh for each test, and sessions on them."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)


async def write(factory: Factory, model: type[Any], rows: list[dict[str, Any]]) -> None:
    async with factory() as session, session.begin():
        session.add_all(model(**row) for row in rows)


async def read_three_ways(
    factory: Factory, config: Any, count_queries: CountQueries, read: Callable[[Any], Any]
) -> tuple[Any, Any, Any, list[str]]:
    """(uncached, cold, cached hit, SQL sent by the hit), each read in a session of its own."""
    async with factory() as session:
        uncached = await read(BaseRepository(Sample, session))
    async with factory() as session:
        cold = await read(BaseRepository(Sample, session, config))
    await config.settle()
    async with factory() as session:
        with count_queries() as log:
            cached = await read(BaseRepository(Sample, session, config))
    return uncached, cold, cached, log.statements


async def test_every_column_type_roundtrips_through_the_cache(
    stack: CacheStack, codec_factory: Factory, count_queries: CountQueries
) -> None:
    await write(codec_factory, Sample, ROWS)
    config = stack.config()

    uncached, cold, cached, statements = await read_three_ways(
        codec_factory, config, count_queries, lambda repo: repo.list(order_by="id")
    )

    assert statements == [], "the second list() was not served from the cache"
    assert [row.id for row in uncached] == [1, 2, 3]
    assert_same_rows(cold, uncached)
    assert_same_rows(cached, uncached)
    assert all(value is None for key, value in column_values(cached[2]).items() if key != "id")
    stats = config.stats()
    assert (stats.hits, stats.fills, stats.backend_errors) == (1, 1, 0)


@pytest.mark.parametrize("row", ROWS, ids=["full", "edges", "nulls"])
async def test_get_roundtrips_every_column_type(
    stack: CacheStack, codec_factory: Factory, count_queries: CountQueries, row: dict[str, Any]
) -> None:
    await write(codec_factory, Sample, ROWS)
    config = stack.config()

    uncached, cold, cached, statements = await read_three_ways(
        codec_factory, config, count_queries, lambda repo: repo.get(row["id"])
    )

    assert statements == []
    assert type(cached) is Sample
    for attr, value in column_values(uncached).items():
        assert_same_value(f".{attr}", column_values(cold)[attr], value)
        assert_same_value(f".{attr}", column_values(cached)[attr], value)


async def test_values_json_has_no_room_for(
    stack: CacheStack, codec_factory: Factory, count_queries: CountQueries
) -> None:
    """Infinities and NaN in a float column, integers past 64 bits in a JSON document: JSON
    (orjson) cannot carry them as they are. Where the database stores such a value, the
    cached row must still equal the stored one, or the query must go uncached; a read
    must never fail and never return something else."""
    specials = [
        {"id": 10, "ratio": float("inf")},
        {"id": 11, "ratio": float("-inf")},
        {"id": 12, "ratio": float("nan")},
        {"id": 13, "doc": {"n": 2**70}},
        {"id": 14, "price": Decimal("NaN")},
    ]
    stored = []
    for row in specials:
        try:
            await write(codec_factory, Sample, [row])
        except DBAPIError:  # the database refused the value: nothing to cache
            continue
        stored.append(row["id"])
    async with codec_factory() as session:
        held = {s.id: s for s in await BaseRepository(Sample, session).list()}
    # What each database keeps (MariaDB refuses non-finite floats; SQLite stores NaN as NULL).
    assert set(held) == set(stored)
    assert 13 in stored, "every database stores a big integer in a JSON document"

    config = stack.config()
    for ident in stored:
        uncached, cold, cached, statements = await read_three_ways(
            codec_factory, config, count_queries, lambda repo, ident=ident: repo.get(ident)
        )
        if ident != 13:  # carried faithfully, so served from the cache
            assert statements == [], f"id {ident} was not cached"
        for attr, value in column_values(uncached).items():
            assert_same_value(f"id {ident} .{attr}", column_values(cold)[attr], value)
            assert_same_value(f"id {ident} .{attr}", column_values(cached)[attr], value)


# -- models the codec cannot serve -----------------------------------------------------------


class Tags(TypeDecorator[list[str]]):
    """Comma-separated text in the database, a list in Python."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Any) -> str | None:
        return None if value is None else ",".join(value)

    def process_result_value(self, value: str | None, dialect: Any) -> list[str] | None:
        return None if value is None else value.split(",")

    @property
    def python_type(self) -> type[Any]:
        return list


class PathText(TypeDecorator[pathlib.PurePosixPath]):
    """A path stored as text; ``python_type`` is left to the impl (``str``)."""

    impl = String(200)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else pathlib.PurePosixPath(value)


class BigNumberText(TypeDecorator[int]):
    """Integers of any size, stored as text; ``python_type`` says ``int``, which the codec
    takes as JSON-safe, but orjson refuses integers past 64 bits."""

    impl = String(60)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> int | None:
        return None if value is None else int(value)

    @property
    def python_type(self) -> type[Any]:
        return int


class Tagged(Base):
    __tablename__ = "codec_tagged"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tags: Mapped[list[str] | None] = mapped_column(Tags)


class Filed(Base):
    __tablename__ = "codec_filed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    path: Mapped[pathlib.PurePosixPath | None] = mapped_column(PathText)


class Counted(Base):
    __tablename__ = "codec_counted"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    total: Mapped[int | None] = mapped_column(BigNumberText)


UNSUPPORTED = {
    "python_type=list": (Tagged, "tags", ["a", "b"]),
    "python_type inherited": (Filed, "path", pathlib.PurePosixPath("/srv/data/file.txt")),
    "int past 64 bits": (Counted, "total", 2**80 + 1),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
async def test_model_with_an_unsupported_column_is_read_uncached(
    stack: CacheStack, codec_factory: Factory, count_queries: CountQueries, case: str
) -> None:
    model, attr, value = UNSUPPORTED[case]
    await write(codec_factory, model, [{"id": 1, attr: value}, {"id": 2, attr: None}])
    config = stack.config()

    for _ in range(2):
        async with codec_factory() as session:
            repo = BaseRepository(model, session, config)
            with count_queries() as log:
                rows = await repo.list(order_by="id")
                one = await repo.get(1)
            await config.settle()
        assert log.count == 2, "a read of an uncacheable model was served from the cache"
        assert [getattr(row, attr) for row in rows] == [value, None]
        assert type(getattr(rows[0], attr)) is type(value)
        assert one is not None
        assert getattr(one, attr) == value

    stats = config.stats()
    assert (stats.fills, stats.hits, stats.backend_errors) == (0, 0, 0)
    assert not {key for key in await stack.keys(config) if ":~" not in key}
