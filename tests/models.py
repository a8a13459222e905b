"""Models and schemas shared by the test suite.

`User` carries every column the user guide filters or writes on, and has a `deleted_at` column,
so soft delete applies to it. `Article` has no `deleted_at`, for the hard-delete-only paths.
"""

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, DateTime, Integer, Numeric, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Naive UTC now, as the naive DateTime columns store it."""
    return datetime.now(UTC).replace(tzinfo=None)


# MySQL/MariaDB DATETIME keeps whole seconds unless asked for more; keep microseconds everywhere so
# a value read back equals the value written and `__lt` cut-offs behave alike on every backend.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    department: Mapped[str | None] = mapped_column(String(50))
    salary: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    bonus_eligible: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    role: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str | None] = mapped_column(String(50))
    type: Mapped[str | None] = mapped_column(String(50))
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    last_privilege_check: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivation_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(Timestamp, nullable=False, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(Timestamp, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str | None] = mapped_column(Text)
    score: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    published: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    email: str | None = None
    department: str | None = None
    salary: int | None = None
    is_active: bool = True
    bonus_eligible: bool = False
    role: str | None = None
    status: str | None = None
    type: str | None = None
    last_login: datetime | None = None


class UserUpdate(BaseModel):
    """Every field optional: dump with `exclude_unset=True` to get only what the caller set."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str | None = None
    department: str | None = None
    salary: int | None = None
    is_active: bool | None = None
    bonus_eligible: bool | None = None
    role: str | None = None
    status: str | None = None
    type: str | None = None
    last_login: datetime | None = None
    last_privilege_check: datetime | None = None
    deactivated_at: datetime | None = None
    deactivation_reason: str | None = None
    deleted_at: datetime | None = None
