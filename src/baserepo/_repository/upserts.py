"""bulk_upsert: insert new records and update existing ones, matched on a unique key."""

from __future__ import annotations

import typing
from typing import Any

from .._arguments import check_batch_size, check_records
from .._bulk._upsert import UpsertPlan
from .._bulk.upserts import UpsertEngine
from .._events import EventType
from .._identity import sync_changed, with_onupdate_values
from ..exceptions import ConfigurationError
from .bulk import BulkMethods
from .state import CreateSchemaT, IdT, ModelT, Records, UpdateSchemaT

if typing.TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .._bulk.tally import BatchCommitted, ProgressCallback
    from .._results import BulkOperationResult


__all__ = ["UpsertMethods"]


class UpsertMethods(BulkMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """bulk_upsert, over the bulk engine of ``BulkMethods``."""

    async def bulk_upsert(
        self,
        data_list: Records,
        unique_fields: str | Iterable[str],
        update_fields: str | Iterable[str] | None = None,
        batch_size: int | None = None,
        emit_events: bool = True,
        *,
        progress: ProgressCallback | None = None,
    ) -> BulkOperationResult[IdT]:
        """Insert the records whose key is new, update the rows whose key exists.

        Rows are matched on ``unique_fields``, which must be the fields of one unique
        constraint (or unique index) of the table, or its primary key. An existing row gets
        ``update_fields`` from its record (None: every field the record gives, except
        ``unique_fields``) and is written only if one of them differs; otherwise it is
        reported in ``unchanged_ids`` and publishes nothing. A soft-deleted row holds its key
        like any other: it is updated and stays deleted (unless the records give its
        ``deleted_at``).

        Every record ends in exactly one of ``created_ids``, ``updated_ids``,
        ``unchanged_ids`` (each in input order) or ``failures``: validation as for
        ``bulk_create``; ``duplicate`` for a record whose key a later record of the same
        batch repeats (the last one wins); a record the database refuses, and the rest of its
        atomic batch, as for ``bulk_create``. Events: one ``created`` and one ``updated`` per
        committed batch; the cache is invalidated after each commit.

        Raises:
            ConfigurationError: ``unique_fields`` name no unique constraint or primary key.
            ValueError: an unknown field, or ``update_fields`` overlapping ``unique_fields``.
            BulkOperationError: the call stopped midway; ``.result`` accounts for every record.
        """
        check_records(data_list)
        check_batch_size(batch_size, optional=True)
        plan = self._upsert_plan(unique_fields, update_fields)
        dialect = await self._bulk_dialect()
        self._reads.wrote()
        engine = UpsertEngine(self.session, self._info, self._preparer, dialect, self._retry)
        return await engine.upsert(
            data_list,
            plan=plan,
            batch_size=batch_size,
            on_created=self._effects.per_batch(EventType.CREATED, emit_events, with_rows=True),
            on_updated=self._on_upserted(plan, emit_events),
            progress=progress,
        )

    def _upsert_plan(
        self, unique_fields: str | Iterable[str], update_fields: str | Iterable[str] | None
    ) -> UpsertPlan:
        info = self._info
        unique = _names("unique_fields", unique_fields)
        if not unique:
            raise ValueError("unique_fields is empty: name the fields rows are matched on")
        self._known_fields("unique_fields", unique)
        groups = [set(group) for group in info.unique_groups]
        if set(unique) not in groups:
            shown = "; ".join(", ".join(group) for group in info.unique_groups)
            raise ConfigurationError(
                f"{info.model.__name__}: unique_fields ({', '.join(unique)}) are not the fields "
                f"of a unique constraint or of the primary key; the model's are: {shown}"
            )
        update: tuple[str, ...] | None = None
        if update_fields is not None:
            update = _names("update_fields", update_fields)
            self._known_fields("update_fields", update)
            both = sorted(set(update) & set(unique))
            if both:
                raise ValueError(f"update_fields may not name unique_fields: {', '.join(both)}")
        keys = info.column_keys
        return UpsertPlan(
            unique_keys=tuple(keys[name] for name in unique),
            update_keys=None if update is None else tuple(keys[name] for name in update),
            # Computed once per call, as bulk_update does: the session's objects get them too.
            stamps=with_onupdate_values(info, {}),
        )

    def _known_fields(self, parameter: str, names: Sequence[str]) -> None:
        unknown = [name for name in names if name not in self._info.columns]
        if unknown:
            raise ValueError(
                f"{parameter}: no such column {', '.join(unknown)}; "
                f"valid: {', '.join(self._info.columns)}"
            )

    def _on_upserted(self, plan: UpsertPlan, emit_events: bool) -> BatchCommitted:
        """The callback for a batch's updated rows: the session's objects for them get the
        values written (each row its own), then the cache and ``updated`` event follow."""
        session, info = self.session, self._info
        after = self._effects.per_batch(EventType.UPDATED, emit_events, with_rows=True)

        def on_updated(ids: Sequence[Any], rows: Sequence[dict[str, Any]]) -> None:
            # Each row wrote its own values: one look-up per row, unless the session holds none.
            if len(session.sync_session.identity_map):
                for row_id, row in zip(ids, rows, strict=True):
                    written = {key: row[key] for key in plan.updated_columns(list(row))}
                    sync_changed(session, info, [row_id], {**plan.stamps, **written})
            if after is not None:
                after(ids, rows)

        return on_updated


def _names(parameter: str, value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    names = tuple(value)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{parameter} must be a field name or an iterable of field names")
    return names
