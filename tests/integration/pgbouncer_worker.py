"""One application process of ``test_pgbouncer.py``: concurrent sessions through PgBouncer.

Run as ``python -m tests.integration.pgbouncer_worker '<json>'`` with ``url`` (PgBouncer's),
``client`` (one of ``CLIENTS``), ``process`` (its index: keys and names of its own),
``sessions``, ``scenario`` (``every_call`` or ``staged``) and ``code_length``. Prints one JSON
line: the failures, each naming the session, the step and the error; exits 1 if there is one.

Each process is a fresh interpreter, so asyncpg's statement counter starts at 1 in every one of
them, as in a fleet of application processes behind one PgBouncer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any
from uuid import uuid4

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from baserepo import BaseRepository, BulkOperationResult, create_engine
from tests.models import User

CLIENTS = ("statement_cache_size=0", "uuid_statement_names")
"""The two client settings docs/deployment.md gives for PgBouncer's transaction pooling."""

COPY_ROWS = 300
"""Records of the COPY batch (on asyncpg every batch whose keys come from the sequence)."""
GIVEN_KEY_ROWS = 40
"""Records with their keys given: the array (``unnest``) statement, not COPY."""
TICKET_ROWS = 60
UPSERT_ROWS = 100
"""bulk_upsert: this many existing rows updated..."""
UPSERT_NEW_ROWS = 1_900
"""...and this many new ones created: 2,000 records in all, the asyncpg dialect's
``stage_min_rows``, so the batch goes through the staging table."""


def ticket_model(code_length: int) -> type[Any]:
    """``tickets``: a two-column unique constraint, so ``ignore_conflicts`` cannot look the
    values up first and always goes through the TEMP staging table."""

    class Base(DeclarativeBase):
        pass

    class Ticket(Base):
        __tablename__ = "tickets"
        __table_args__ = (UniqueConstraint("code", "lane"),)

        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
        code: Mapped[str] = mapped_column(String(code_length), nullable=False)
        lane: Mapped[int] = mapped_column(Integer, nullable=False)

    return Ticket


def make_engine(url: str, client: str) -> AsyncEngine:
    if client == "statement_cache_size=0":
        return create_engine(url, connect_args={"statement_cache_size": 0})
    if client == "uuid_statement_names":
        # SQLAlchemy's recipe ("Prepared Statement Name with PGBouncer") with SQLAlchemy's
        # statement cache off, as docs/deployment.md gives it: a statement cached in one
        # transaction is not on the server connection PgBouncer gives a later one. asyncpg's
        # own statement cache stays on (its default), as with the recipe alone.
        return create_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
                "prepared_statement_cache_size": 0,
            },
        )
    raise ValueError(f"unknown client setting {client!r}")


def expect(step: str, found: Any, wanted: Any) -> None:
    if found != wanted:
        raise AssertionError(f"{step}: got {found!r}, expected {wanted!r}")


def clean(step: str, result: BulkOperationResult, *, errors: int = 0) -> None:
    if result.error_count != errors:
        raise AssertionError(f"{step}: {result.error_count} errors, e.g. {result.errors[:3]}")


async def every_call(engine: AsyncEngine, tag: str, key_base: int, ticket: type[Any]) -> None:
    """Every repository call, on rows of this session alone (``tag``, keys from ``key_base``)."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(User, session)
        one = await repo.create({"name": "one", "email": f"{tag}-one@example.com"})
        expect("get", (await repo.get(one.id)) is not None, True)
        expect("get_many", len(await repo.get_many([one.id])), 1)
        expect("list", len(await repo.list(email__startswith=f"{tag}-")), 1)
        expect("count", await repo.count(email__startswith=f"{tag}-"), 1)
        expect("exists", await repo.exists(email=f"{tag}-one@example.com"), True)
        updated = await repo.update(one.id, {"salary": 5})
        expect("update", updated.salary if updated else None, 5)
        expect("soft delete", await repo.delete(one.id), True)
        expect("soft-deleted get", await repo.get(one.id), None)
        expect("restore", (await repo.restore(one.id)) is not None, True)
        expect("hard delete", await repo.delete(one.id, soft_delete=False), True)

        copied = [{"name": f"c{i}", "email": f"{tag}-c{i}@example.com"} for i in range(COPY_ROWS)]
        clean("bulk_create (COPY)", await repo.bulk_create(copied))
        given = [
            {"id": key_base + i, "name": f"g{i}", "email": f"{tag}-g{i}@example.com"}
            for i in range(GIVEN_KEY_ROWS)
        ]
        clean("bulk_create (keys given: arrays)", await repo.bulk_create(given))
        # Half of them clash with the COPY batch: looked up first, the new half copied.
        again = copied[: COPY_ROWS // 2] + [
            {"name": f"n{i}", "email": f"{tag}-n{i}@example.com"} for i in range(COPY_ROWS // 2)
        ]
        clean(
            "bulk_create ignore_conflicts (looked up, COPY)",
            await repo.bulk_create(again, ignore_conflicts=True),
            errors=COPY_ROWS // 2,
        )
        await staged(session, tag, ticket, 0)
        # Existing rows (a new salary) and new ones: bulk_upsert's own TEMP staging table.
        upserts = [{**row, "salary": 3} for row in copied[:UPSERT_ROWS]] + [
            {"name": f"u{i}", "email": f"{tag}-u{i}@example.com", "salary": 3}
            for i in range(UPSERT_NEW_ROWS)
        ]
        upserted = await repo.bulk_upsert(upserts, unique_fields="email")
        clean("bulk_upsert (staged)", upserted)
        expect(
            "bulk_upsert outcomes",
            (len(upserted.updated_ids), len(upserted.created_ids)),
            (UPSERT_ROWS, UPSERT_NEW_ROWS),
        )

        total = COPY_ROWS + GIVEN_KEY_ROWS + COPY_ROWS // 2 + UPSERT_NEW_ROWS
        mine = {"email__startswith": f"{tag}-"}
        changed = await repo.bulk_update(mine, {"salary": 7}, batch_size=100)
        expect("bulk_update", changed.success_count, total)
        soft = await repo.bulk_delete({**mine, "salary": 7}, batch_size=150)
        expect("bulk_delete (soft)", soft.success_count, total)
        gone = await repo.bulk_delete({**mine, "deleted_at__isnotnull": True}, soft_delete=False)
        expect("bulk_delete (hard)", gone.success_count, total)
        expect("count afterwards", await repo.count(mine, include_deleted=True), 0)


async def staged(session: AsyncSession, tag: str, ticket: type[Any], lane: int) -> None:
    """``ignore_conflicts`` through the TEMP staging table; half the batch clashes."""
    repo = BaseRepository(ticket, session)
    code = f"{tag}-".ljust(session.info.get("code_length", 0), "x")
    first = [{"code": f"{code}{i}", "lane": lane} for i in range(TICKET_ROWS)]
    clean("bulk_create ignore_conflicts (staged)", await repo.bulk_create(first))
    mixed = first[: TICKET_ROWS // 2] + [
        {"code": f"{code}{i}", "lane": lane + 1} for i in range(TICKET_ROWS // 2)
    ]
    result = await repo.bulk_create(mixed, ignore_conflicts=True)
    clean("bulk_create ignore_conflicts (staged)", result, errors=TICKET_ROWS // 2)
    expect("staged ids", len(result.created_ids), TICKET_ROWS // 2)


async def staged_only(engine: AsyncEngine, tag: str, ticket: type[Any], code_length: int) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        # The longest codes the column takes: a stage with an older, shorter type refuses them.
        session.info["code_length"] = code_length - 4
        await staged(session, tag, ticket, 0)


async def run(args: dict[str, Any]) -> list[str]:
    engine = make_engine(args["url"], args["client"])
    ticket = ticket_model(args["code_length"])
    process = args["process"]

    async def one_session(index: int) -> str | None:
        tag = f"{args['run']}p{process}s{index}"
        try:
            if args["scenario"] == "every_call":
                await every_call(engine, tag, 1_000_000 * (process + 1) + 1_000 * index, ticket)
            else:
                await staged_only(engine, tag, ticket, args["code_length"])
        except Exception as exc:
            last = traceback.format_exception_only(exc)[-1].strip()
            return f"process {process} session {index}: {last[:600]}"
        return None

    try:
        found = await asyncio.gather(*(one_session(i) for i in range(args["sessions"])))
    finally:
        await engine.dispose()
    return [failure for failure in found if failure is not None]


def main() -> int:
    args = json.loads(sys.argv[1])
    failures = asyncio.run(run(args))
    print(json.dumps(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
