"""Bulk writes: bulk_create, bulk_update and bulk_delete, through the bulk engine."""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import and_
from sqlalchemy import inspect as sa_inspect

from .._arguments import check_batch_size, check_records, check_whole_table
from .._bulk import BulkChanges, BulkDialect, BulkEngine, bulk_dialect_for
from .._events import EventType
from .._identity import (
    with_onupdate_values,
)
from .._statements import connect
from .state import CreateSchemaT, Filters, IdT, ModelT, Records, RepositoryState, UpdateSchemaT

if typing.TYPE_CHECKING:
    from collections.abc import Mapping

    from .._bulk.tally import ProgressCallback
    from .._results import BulkOperationResult


__all__ = ["DEFAULT_CHANGE_BATCH_SIZE", "BulkMethods"]

DEFAULT_CHANGE_BATCH_SIZE = 50_000
"""Rows per bulk_update/bulk_delete batch when the caller gives none. Each batch pays a commit
and a search for its own rows: for a cheap change (a hard delete of 30,000 of 100,000 rows)
that left 0.68x the single statement at 10,000 and 0.76x at 20,000, 1.07x at 50,000
(bench/change_batch_size.py). PostgreSQL keeps row locks in the rows, so a larger batch only
holds them longer (~0.1 s for 50,000 deletes, ~0.35 s for updates); docs/performance.md."""


class BulkMethods(RepositoryState[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """bulk_create, bulk_update and bulk_delete."""

    async def bulk_create(
        self,
        data_list: Records,
        batch_size: int | None = None,
        emit_events: bool = True,
        ignore_conflicts: bool = False,
        *,
        progress: ProgressCallback | None = None,
        isolate_errors: bool = False,
    ) -> BulkOperationResult[IdT]:
        """Insert many records in atomic batches; every record is created or reported.

        Args:
            data_list: any iterable or async iterable of mappings, pydantic models,
                dataclasses or model instances; only one batch is held in memory.
            batch_size: records per batch; None: the dialect's default (10,000 on
                PostgreSQL and SQLite, ``DEFAULT_BATCH_SIZE`` = 2,000 on MariaDB), clamped
                to the dialect's bind-parameter limit where rows travel as parameters.
            emit_events: publish one ``created`` event per committed batch.
            ignore_conflicts: skip records that hit a unique constraint instead of failing
                their batch; each skip is reported (kind ``conflict``, message says "unique").
            progress: called with the number of input records handled so far.
            isolate_errors: when the database refuses a batch, write the batch's other
                records anyway (in one unit, each refused record set aside and reported
                with its reason) instead of rolling the whole batch back.

        Raises:
            BulkOperationError: the call stopped midway (the input or ``progress`` raised,
                the database went away); ``.result`` accounts for every record taken.
            DatabaseUnavailableError: the database was unreachable before anything was done.
            ConfigurationError: e.g. the session's connection is in AUTOCOMMIT mode.
            TypeError: ``data_list`` is one record (a mapping or a pydantic model) or no
                iterable at all, or ``batch_size`` is not an int.
        """
        check_records(data_list)
        check_batch_size(batch_size, optional=True)
        engine = await self._bulk_engine()
        return await engine.create(
            data_list,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            on_batch=self._effects.per_batch(EventType.CREATED, emit_events, with_rows=True),
            progress=progress,
            isolate_errors=isolate_errors,
        )

    async def bulk_update(
        self,
        filters: Filters,
        update_data: UpdateSchemaT | Mapping[str, Any],
        batch_size: int = DEFAULT_CHANGE_BATCH_SIZE,
        emit_events: bool = True,
        *,
        include_deleted: bool = False,
        all_rows: bool = False,
        progress: ProgressCallback | None = None,
    ) -> BulkOperationResult[IdT]:
        """Apply ``update_data`` to every row matching ``filters``, in atomic batches of keys.

        Empty ``filters`` would reach every row: that raises ValueError unless the call says
        ``all_rows=True`` (with ``filters={}``). Filter values are checked against their
        columns first (InvalidFilterError), so a bad value never reaches the database.
        """
        check_batch_size(batch_size)
        values = self._preparer.to_columns(self._preparer.for_update(update_data))
        if not values:
            raise ValueError("update_data is empty: nothing to update")
        requested = values
        # The statement also sets the onupdate stamps, computed here so the session's objects
        # can be given them; events carry what the caller asked to change.
        values = with_onupdate_values(self._info, values)
        condition = self._condition(filters, include_deleted)
        check_whole_table("bulk_update", filters, all_rows)
        changes = BulkChanges(self.session, self._info, await self._bulk_dialect(), self._retry)
        return await changes.change_where(
            condition,
            values=values,
            batch_size=batch_size,
            on_batch=self._effects.per_batch(
                EventType.UPDATED, emit_events, with_rows=True, written=values, event_row=requested
            ),
            progress=progress,
        )

    async def bulk_delete(
        self,
        filters: Filters,
        soft_delete: bool | None = None,
        batch_size: int = DEFAULT_CHANGE_BATCH_SIZE,
        emit_events: bool = True,
        *,
        include_deleted: bool = False,
        all_rows: bool = False,
        progress: ProgressCallback | None = None,
    ) -> BulkOperationResult[IdT]:
        """Delete every row matching ``filters``: soft by default where the model supports it.

        Empty ``filters`` would reach every row: that raises ValueError unless the call says
        ``all_rows=True`` (with ``filters={}``).
        """
        check_batch_size(batch_size)
        soft = self._soft.resolve(soft_delete)
        condition = self._condition(filters, include_deleted)
        check_whole_table("bulk_delete", filters, all_rows)
        values = None
        if soft:
            # Stamping an already-deleted row again would only move its deletion date.
            condition = and_(condition, self._soft.alive())
            values = with_onupdate_values(
                self._info, self._preparer.to_columns({self._soft.required_attr: self._soft.now()})
            )
        changes = BulkChanges(self.session, self._info, await self._bulk_dialect(), self._retry)
        return await changes.change_where(
            condition,
            values=values,
            batch_size=batch_size,
            on_batch=self._effects.per_batch(
                EventType.SOFT_DELETED if soft else EventType.DELETED,
                emit_events,
                with_rows=False,
                written=values,
                deletes=not soft,
            ),
            progress=progress,
            # A deleted row is gone, a soft-deleted one fails the `deleted_at IS NULL` above.
            stops_matching=True,
        )

    async def _bulk_engine(self) -> BulkEngine:
        dialect = await self._bulk_dialect()
        self._reads.wrote()  # COPY writes on the raw connection, past the session's events
        return BulkEngine(self.session, self._info, self._preparer, dialect, self._retry)

    async def _bulk_dialect(self) -> BulkDialect:
        # Connected first, always: some capabilities (MariaDB's RETURNING) are known only
        # then, and a database that cannot be reached is told apart here, before the input
        # is taken, from whatever the input or the batches raise later.
        await connect(self.session, self.model)
        bind = self.session.sync_session.get_bind(mapper=sa_inspect(self.model))
        return bulk_dialect_for(bind.dialect)
