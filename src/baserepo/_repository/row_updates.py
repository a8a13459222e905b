"""bulk_update_rows: per-row values by primary key, through ``_bulk.rows``."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterable, Iterable
from typing import Any

from sqlalchemy import true

from .._arguments import check_batch_size, check_records
from .._bulk.dialect import ChangeTarget
from .._bulk.rows import RowChange, RowUpdates
from .._bulk.tally import Tally
from .._column_kinds import kind_of
from .._events import EventType
from .._identity import sync_changed, with_onupdate_values
from .._records import to_mapping
from .._results import FailureKind, RecordFailure
from ..exceptions import RecordValidationError
from .bulk import BulkMethods
from .state import CreateSchemaT, IdT, ModelT, Records, UpdateSchemaT

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .._results import BulkOperationResult

__all__ = ["RowUpdateMethods"]


class RowUpdateMethods(BulkMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """bulk_update_rows."""

    async def bulk_update_rows(
        self,
        rows: Records,
        fields: Iterable[str] | None = None,
        batch_size: int | None = None,
        emit_events: bool = True,
        *,
        include_deleted: bool = False,
    ) -> BulkOperationResult[IdT]:
        """Give each row, found by its primary key, its own new values: one UPDATE per batch.

        Args:
            rows: mappings, pydantic models or dataclasses (any iterable or async iterable),
                each carrying the primary key and the new values of its row. A pydantic model
                writes the fields it was given (``exclude_unset``). Rows may write different
                columns: rows writing the same set share statements.
            fields: write only these attributes; a row's other keys are ignored. None: every
                key of each row but the primary key.
            batch_size: rows per statement; None: the dialect's default (10,000 on PostgreSQL,
                whose statement carries one array per column; 500 elsewhere, where a
                statement's CASE grows with the square of its rows).
            emit_events: publish one ``updated`` event per committed batch, with its ids and
                each row's requested values.
            include_deleted: also update soft-deleted rows; otherwise they are ``not_found``.

        Returns:
            ``success_count`` rows changed, ``affected_ids`` their keys in input order; every
            other input row is in ``failures`` with its index: ``validation`` (no key, an
            unknown field, a bad value, nothing to write), ``duplicate`` (a later row has the
            same key: the last one wins), ``not_found``, or the database's refusal of its batch.

        Raises:
            ValueError: ``fields`` names no column, the primary key, or nothing.
            TypeError: ``rows`` is one record or no iterable, ``batch_size`` not an int.
            BulkOperationError: the connection failed midway; ``.result`` accounts for every row.
        """
        check_records(rows, argument="rows")
        check_batch_size(batch_size, optional=True)
        wanted = self._fields_to_write(fields)
        records = (
            [record async for record in rows] if isinstance(rows, AsyncIterable) else list(rows)
        )
        tally = Tally()
        changes = self._row_changes(records, wanted, tally)
        # The onupdate stamps (updated_at) are the same for every row, computed once, as
        # bulk_update does, so that the session's objects can be given them.
        common = with_onupdate_values(self._info, {})
        condition = true() if include_deleted or not self._soft.supported else self._soft.alive()
        dialect = await self._bulk_dialect()
        target = ChangeTarget(self._info.table, self._info.table.c[self._pk_column_key])
        updates = RowUpdates(self.session, self._info, dialect, target, self._retry)
        await updates.run(
            changes,
            tally,
            condition=condition,
            common=common,
            batch_size=batch_size,
            on_batch=self._rows_committed(emit_events, common),
        )
        # Batches go by column set: put the keys back in input order.
        index_of = {change.key: change.index for change in changes}
        tally.affected_ids.sort(key=index_of.__getitem__)
        return tally.result()

    @property
    def _pk_column_key(self) -> str:
        return self._info.column_keys[self._info.pk_attr]

    def _fields_to_write(self, fields: Iterable[str] | None) -> frozenset[str] | None:
        if fields is None:
            return None
        if isinstance(fields, str):
            raise TypeError("fields must be an iterable of attribute names, not one string")
        wanted = frozenset(fields)
        unknown = sorted(wanted - set(self._info.columns))
        if unknown:
            raise ValueError(
                f"fields: {self.model.__name__} has no column {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(sorted(self._info.columns))}"
            )
        if self._info.pk_attr in wanted:
            raise ValueError(
                "fields: the primary key says which row to update; it cannot be written"
            )
        if not wanted:
            raise ValueError("fields is empty: nothing to update")
        return wanted

    def _row_changes(
        self, records: list[Any], wanted: frozenset[str] | None, tally: Tally
    ) -> list[RowChange]:
        """One change per key, in input order, the last row of a key winning; every row
        refused (or superseded) is reported in ``tally``."""
        pk = self._info.pk_attr
        key_kind = kind_of(self._info.columns[pk].type)
        preparer = self._preparer
        by_key: dict[Any, RowChange] = {}
        for index, record in enumerate(records):
            try:
                data = to_mapping(record, model=self.model, partial=True)
                key = data.pop(pk, None)
                if key is None:
                    raise RecordValidationError(
                        {pk: "missing_key: the primary key says which row to update"}, index=index
                    )
                why = key_kind.check(key) if key_kind.check is not None else None
                if why is not None:
                    raise RecordValidationError({pk: why}, index=index)
                if key_kind.convert is not None:
                    key = key_kind.convert(key)
                if wanted is not None:
                    data = {name: value for name, value in data.items() if name in wanted}
                if not data:
                    raise RecordValidationError(
                        {"<record>": "nothing to update besides the primary key"}, index=index
                    )
                try:
                    values = preparer.for_update(data)
                except RecordValidationError as error:
                    raise RecordValidationError(error.problems, index=index) from None
            except (RecordValidationError, ValueError) as error:
                tally.fail(RecordFailure.invalid(index, error, record=_shown(record)))
                continue
            earlier = by_key.pop(key, None)
            if earlier is not None:
                tally.fail(
                    RecordFailure(
                        earlier.index,
                        FailureKind.DUPLICATE,
                        f"record {earlier.index}: key {key!r} again at record {index}, "
                        "which wins (the last row of a key is written)",
                        ids=(key,),
                        record=earlier.requested,
                    )
                )
            by_key[key] = RowChange(index, key, preparer.to_columns(values), {pk: key, **values})
        return sorted(by_key.values(), key=lambda change: change.index)

    def _rows_committed(
        self, emit_events: bool, common: dict[str, Any]
    ) -> Callable[[Sequence[RowChange]], None]:
        per_batch = self._effects.per_batch(EventType.UPDATED, emit_events, with_rows=True)
        session, info = self.session, self._info

        def on_batch(written: Sequence[RowChange]) -> None:
            # What the session holds for these keys gets what was written, row by row.
            for change in written:
                sync_changed(session, info, (change.key,), {**common, **change.values})
            if per_batch is not None:
                per_batch([c.key for c in written], [c.requested for c in written])

        return on_batch


def _shown(record: Any) -> dict[str, Any] | None:
    try:
        return to_mapping(record, partial=True)
    except RecordValidationError:
        return None
