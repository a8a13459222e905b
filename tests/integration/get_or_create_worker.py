"""One application process of ``test_get_or_create.py``'s process race, and the model it races
on (``Seat``: a composite unique constraint, and soft delete).

Run as ``python -m tests.integration.get_or_create_worker '<json>'`` with ``url``, ``process``
(its index), ``rounds`` and ``start_at`` (a ``time.time()``): round ``r`` starts at
``start_at + r * ROUND_SECONDS`` in every process, so all of them look up the same key at about
the same moment. Prints one JSON object: ``results`` (per round: the seat id from
get_or_create and update_or_create, and their ``created`` flags), ``errors`` (each call that
raised) and ``conflicts`` (unique violations the database raised, that is, races lost).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint, event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from baserepo import BaseRepository, create_engine
from tests.models import Timestamp

ROUND_SECONDS = 0.15


class SeatBase(DeclarativeBase):
    pass


class Seat(SeatBase):
    """A seat is unique per (venue, number): a composite unique constraint, and soft delete."""

    __tablename__ = "goc_seats"
    __table_args__ = (UniqueConstraint("venue", "number", name="uq_goc_seat"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue: Mapped[str] = mapped_column(String(50), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    holder: Mapped[str | None] = mapped_column(String(50))
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


async def main(args: dict[str, Any]) -> dict[str, Any]:
    engine = create_engine(args["url"], poolclass=NullPool)
    conflicts = 0

    def count_conflicts(context: Any) -> None:
        nonlocal conflicts
        text = str(context.original_exception).lower()
        if "unique" in text or "duplicate" in text:
            conflicts += 1

    event.listen(engine.sync_engine, "handle_error", count_conflicts)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    results: list[list[Any]] = []
    errors: list[str] = []
    holder = f"p{args['process']}"
    try:
        for round_ in range(args["rounds"]):
            await asyncio.sleep(max(0.0, args["start_at"] + round_ * ROUND_SECONDS - time.time()))
            try:
                async with factory() as session:
                    repo = BaseRepository(Seat, session)
                    got, got_created = await repo.get_or_create(
                        {"holder": holder}, venue="proc", number=round_
                    )
                    got_id = got.id
                    # On SQLite two of these calls may meet as readers that both want to
                    # write; the loser's transaction is rolled back and run again, and that
                    # rollback expires the session's objects (got): its id is taken above.
                    upd, upd_created = await repo.update_or_create(
                        {"holder": holder}, venue="upd", number=round_
                    )
                    upd_id = upd.id
                results.append([round_, got_id, got_created, upd_id, upd_created])
            except Exception as error:  # reported, not raised: the parent counts them
                errors.append(f"round {round_}: {type(error).__name__}: {error}")
    finally:
        await engine.dispose()
    return {"results": results, "errors": errors, "conflicts": conflicts}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
