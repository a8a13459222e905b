"""The user record of docs/guide.md, shared by the benchmark scripts (a table each)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def user_model(table: str) -> tuple[type[DeclarativeBase], Any]:
    """(its own DeclarativeBase, a users model on ``table``): a few short columns, a unique
    email, two Python-side defaults."""

    class Base(DeclarativeBase):
        pass

    class BenchUser(Base):
        __tablename__ = table

        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str] = mapped_column(String(255), unique=True)
        department: Mapped[str | None] = mapped_column(String(50))
        salary: Mapped[int | None] = mapped_column(Integer)
        is_active: Mapped[bool] = mapped_column(Boolean, default=True)
        created_at: Mapped[datetime] = mapped_column(
            DateTime, default=lambda: datetime.now(UTC).replace(tzinfo=None)
        )

    return Base, BenchUser
