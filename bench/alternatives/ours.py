"""baserepo's side: ``repo.create`` in a loop, ``bulk_create`` three ways, and
``bulk_update`` / ``bulk_delete`` by filter. Only the public API is used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import BaseRepository, EventBus, EventType, RepositoryEvent

from .data import SALARY_CUTOFF, BenchStaff, BenchUser, Clock, Outcome

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Iterable

    from sqlalchemy.ext.asyncio import AsyncEngine

    from baserepo import BulkOperationResult

Users = BaseRepository[BenchUser, dict[str, Any], dict[str, Any]]
Staff = BaseRepository[BenchStaff, dict[str, Any], dict[str, Any]]
FILTER = {"salary__lt": SALARY_CUTOFF}


class Baserepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_loop(self, rows: list[dict[str, Any]]) -> Outcome:
        """``await repo.create(row)`` for every row: one commit each."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            repo = Users(BenchUser, session, event_bus=EventBus())
            await session.connection()  # connect before the clock starts
            await session.commit()
            with Clock() as clock:
                ids = [(await repo.create(r)).id for r in rows]
        return Outcome(clock.seconds, len(ids), ids)

    async def _bulk(
        self,
        rows: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]],
        bus: EventBus | None = None,
        **options: Any,
    ) -> tuple[float, BulkOperationResult]:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            repo = Users(BenchUser, session, event_bus=bus or EventBus())
            await session.connection()
            await session.commit()
            with Clock() as clock:
                result = await repo.bulk_create(rows, **options)
        return clock.seconds, result

    async def bulk_create(self, rows: list[dict[str, Any]]) -> Outcome:
        """``bulk_create(rows)`` with its defaults (events on, nobody subscribed)."""
        seconds, result = await self._bulk(rows)
        return Outcome(seconds, result.success_count, result.created_ids)

    async def bulk_create_events(self, rows: list[dict[str, Any]]) -> Outcome:
        """``bulk_create(rows, emit_events=True)`` with one handler reading every event."""
        delivered: list[int] = []

        async def on_created(event: RepositoryEvent) -> None:
            delivered.append(len(event.ids))

        bus = EventBus()
        bus.subscribe(EventType.CREATED, on_created, model=BenchUser)
        seconds, result = await self._bulk(rows, bus, emit_events=True)
        if sum(delivered) != result.success_count:
            raise RuntimeError(f"events carried {sum(delivered)} of {result.success_count} ids")
        return Outcome(seconds, result.success_count, result.created_ids)

    async def bulk_create_ignore(self, rows: list[dict[str, Any]]) -> Outcome:
        """``bulk_create(rows, ignore_conflicts=True)``; 10% of the rows already exist."""
        seconds, result = await self._bulk(rows, ignore_conflicts=True)
        if result.total != len(rows) or len(result.conflicts) != result.error_count:
            raise RuntimeError(f"ignore_conflicts accounted badly: {result}")
        return Outcome(seconds, result.success_count, result.created_ids)

    async def bulk_create_stream(self, rows: AsyncIterable[dict[str, Any]]) -> BulkOperationResult:
        """For the memory probe: the rows come from an async generator."""
        _, result = await self._bulk(rows)
        return result

    async def _change(self, call: str, **options: Any) -> Outcome:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            repo = Staff(BenchStaff, session, event_bus=EventBus())
            await session.connection()
            await session.commit()
            with Clock() as clock:
                if call == "update":
                    result = await repo.bulk_update(FILTER, {"is_active": False})
                else:
                    result = await repo.bulk_delete(FILTER, **options)
        if result.error_count:
            raise RuntimeError(f"bulk_{call} failed on {result.error_count} rows: {result.errors}")
        return Outcome(clock.seconds, result.success_count, result.affected_ids)

    async def bulk_update(self, _rows: list[dict[str, Any]]) -> Outcome:
        return await self._change("update")

    async def bulk_soft_delete(self, _rows: list[dict[str, Any]]) -> Outcome:
        return await self._change("delete", soft_delete=True)

    async def bulk_hard_delete(self, _rows: list[dict[str, Any]]) -> Outcome:
        return await self._change("delete", soft_delete=False)
