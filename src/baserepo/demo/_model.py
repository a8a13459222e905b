"""The demo's one table: every column the user guide's examples write or filter on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository

__all__ = ["Base", "User", "UserRepository", "utcnow"]


def utcnow() -> datetime:
    """Naive UTC, the clock the repository stamps ``deleted_at`` with."""
    return datetime.now(UTC).replace(tzinfo=None)


# MariaDB's DATETIME drops fractions of a second unless asked to keep them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class User(Base):
    """Every column the guide's examples write or filter on; ``deleted_at`` turns soft delete on."""

    __tablename__ = "demo_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    department: Mapped[str | None] = mapped_column(String(50))
    salary: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    bonus_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str] = mapped_column(String(20), default="member")
    status: Mapped[str] = mapped_column(String(20), default="active")
    type: Mapped[str] = mapped_column(String(20), default="regular")
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    last_privilege_check: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivation_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(Timestamp, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


UserRepository = BaseRepository[User, dict[str, Any], dict[str, Any]]
