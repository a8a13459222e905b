"""Models of the column-kind and datetime tests, on a metadata of their own (created only by
the tests that use them).

`Sample` has one column of every kind that all three databases store and PostgreSQL's COPY
carries; `Everything` adds the kinds that only validation and the cache look at (it is never
created). `Moment` and `MomentDoc` hold a naive and an aware timestamp; the JSON column of
`MomentDoc` sends PostgreSQL's bulk path to SQLAlchemy's executemany.
"""

import enum
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    PickleType,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Microseconds on MariaDB too, so values read back equal values written.
Stamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
StampTz = DateTime(timezone=True).with_variant(
    mysql.DATETIME(fsp=6, timezone=True), "mysql", "mariadb"
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Lowercase(TypeDecorator[str]):
    """A user's own decorator: its process_bind_param decides what it takes."""

    impl = String(20)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else str(value).lower()


class KindsBase(DeclarativeBase):
    pass


class _SampleColumns:
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    word: Mapped[str | None] = mapped_column(String(20))
    body: Mapped[str | None] = mapped_column(Text)
    small: Mapped[int | None] = mapped_column(SmallInteger)
    big: Mapped[int | None] = mapped_column(BigInteger)
    ratio: Mapped[float | None] = mapped_column(Float)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    at: Mapped[datetime | None] = mapped_column(Stamp)
    at_tz: Mapped[datetime | None] = mapped_column(StampTz)
    day: Mapped[date | None] = mapped_column(Date)
    clock: Mapped[time | None] = mapped_column(Time)
    span: Mapped[timedelta | None] = mapped_column(Interval)
    token: Mapped[UUID | None] = mapped_column(Uuid)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)


class Sample(_SampleColumns, KindsBase):
    __tablename__ = "kind_samples"


class Everything(_SampleColumns, KindsBase):
    __tablename__ = "kind_everything"

    double: Mapped[float | None] = mapped_column(Double)
    decimal: Mapped[Decimal | None] = mapped_column(Numeric)
    tiny: Mapped[int | None] = mapped_column(mysql.TINYINT)
    colour: Mapped[Colour | None] = mapped_column(Enum(Colour))
    doc: Mapped[Any] = mapped_column(JSON, nullable=True)
    pickled: Mapped[Any] = mapped_column(PickleType, nullable=True)
    lowered: Mapped[str | None] = mapped_column(Lowercase)


class Moment(KindsBase):
    __tablename__ = "moments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime | None] = mapped_column(Stamp)
    at_tz: Mapped[datetime | None] = mapped_column(StampTz)


class MomentDoc(KindsBase):
    __tablename__ = "moment_docs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime | None] = mapped_column(Stamp)
    at_tz: Mapped[datetime | None] = mapped_column(StampTz)
    doc: Mapped[Any] = mapped_column(JSON, nullable=True)


class Emulated(KindsBase):
    """Types SQLAlchemy emulates even on PostgreSQL: a CHAR(32) uuid, a timestamp interval."""

    __tablename__ = "kind_emulated"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[UUID | None] = mapped_column(Uuid(native_uuid=False))
    span: Mapped[timedelta | None] = mapped_column(Interval(native=False))
