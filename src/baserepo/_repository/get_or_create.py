"""get_or_create and update_or_create, safe when several writers race on one unique key.

As Django does it: look the row up; when it is missing, insert it in a SAVEPOINT, inside the
caller's transaction or inside one of our own. If a unique constraint refuses the insert,
another writer got there first: only the SAVEPOINT is rolled back and the row is read again in
the same unit, so the loser returns the winner's row with ``created=False`` instead of an
error. Only if that read finds nothing (the conflict was on some other unique key, or the
winner's row is invisible to this transaction's snapshot) is the conflict raised.

The SAVEPOINT matters even in our own transaction: rolling back a whole transaction expires
every object the session holds, so a lost race would leave the caller's earlier objects
unloaded (DetachedInstanceError once the session closes), which a race lost is no reason for.

The look-ups read the primary, never the cache or a replica: what they find decides a write.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from .._bulk._retry import BatchAttempts
from .._errors import is_unique_violation
from .._events import EventType
from .._statements import TranslatedUnit, read
from ..exceptions import MultipleRowsError, RepositoryDatabaseError
from .state import CreateSchemaT, IdT, ModelT, T, UpdateSchemaT
from .writes import WriteMethods

if typing.TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["GetOrCreateMethods"]

# Django's rule: a filter with a lookup (``age__gte``) narrows the search but says nothing
# about the value a new row should hold, so only plain ``field=value`` filters are written.
_LOOKUP_SEP = "__"


class GetOrCreateMethods(WriteMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """get_or_create and update_or_create."""

    async def get_or_create(
        self,
        defaults: Mapping[str, Any] | None = None,
        *,
        include_deleted: bool = False,
        **filters: Any,
    ) -> tuple[ModelT, bool]:
        """The row matching ``filters``, else a new one: ``(row, created)``.

        A new row holds the plain ``field=value`` filters (not ``field__lookup`` ones) and
        ``defaults``, validated as :meth:`create` validates. When another writer creates the
        same row meanwhile (a unique constraint refuses ours), its row is returned with
        ``created=False``. A soft-deleted row is absent unless ``include_deleted=True``; if a
        unique key still holds it, the insert's IntegrityConflictError is raised.

        Raises:
            MultipleRowsError: more than one row matches ``filters``.
            IntegrityConflictError: the insert was refused and no matching row is visible.

        Example::

            user, created = await repo.get_or_create(
                {"name": "Ada"}, email="ada@example.com"
            )
        """
        found = await self._find_one(filters, include_deleted)
        if found is not None:
            return found, False
        values = self._new_row_values(defaults, filters)
        return await self._retrying(lambda: self._create(values, filters, include_deleted, None))

    async def update_or_create(
        self,
        defaults: Mapping[str, Any] | None = None,
        *,
        include_deleted: bool = False,
        **filters: Any,
    ) -> tuple[ModelT, bool]:
        """Apply ``defaults`` to the row matching ``filters``, else create it: ``(row, created)``.

        The row is locked while it is updated (``SELECT ... FOR UPDATE`` where the database
        has it), so two concurrent calls apply one after the other. A row created meanwhile
        by another writer is updated instead: ``created=False``. ``defaults`` are validated
        as :meth:`update` validates them; a new row as :meth:`get_or_create` builds it.

        Raises:
            MultipleRowsError: more than one row matches ``filters``.
            IntegrityConflictError: the insert was refused and no matching row is visible.
        """
        changes = self._preparer.for_update(defaults or {})
        updated = await self._retrying(lambda: self._update(filters, include_deleted, changes))
        if updated is not None:
            return updated, False
        values = self._new_row_values(defaults, filters)
        return await self._retrying(lambda: self._create(values, filters, include_deleted, changes))

    # -- parts -------------------------------------------------------------------------------

    def _new_row_values(
        self, defaults: Mapping[str, Any] | None, filters: Mapping[str, Any]
    ) -> dict[str, Any]:
        exact = {key: value for key, value in filters.items() if _LOOKUP_SEP not in key}
        return self._preparer.for_create({**exact, **(defaults or {})})

    async def _find_one(
        self,
        filters: Mapping[str, Any],
        include_deleted: bool,
        *,
        lock: Literal["update", "share"] | None = None,
    ) -> ModelT | None:
        query = select(self.model).where(self._condition(filters, include_deleted)).limit(2)
        if lock is not None:
            # A locking read also sees rows committed after a REPEATABLE READ snapshot (InnoDB
            # reads the latest version for it), which a plain SELECT would not. SQLite has no
            # FOR UPDATE: its single writer lock serialises the writes anyway.
            query = query.with_for_update(read=lock == "share")
        rows = list((await read(self.session, query)).scalars())
        if len(rows) > 1:
            raise MultipleRowsError(
                f"more than one {self.model.__name__} row matches {sorted(filters)}; "
                "get_or_create and update_or_create need filters that single out one row"
            )
        return rows[0] if rows else None

    async def _retrying(self, unit: Callable[[], Awaitable[T]]) -> T:
        # A deadlock or busy database says nothing about the row: run the unit again, as a
        # bulk batch is. SQLite's readers deadlock when both then write (the loser gets
        # "database is locked" at once, without waiting); MariaDB may deadlock on the gap
        # locks of concurrent INSERTs of one key. Inside the caller's transaction such a
        # failure raises TransactionRetryError: only the caller can run it again.
        attempts = BatchAttempts(self._retry, self.session)
        while True:
            try:
                return await unit()
            except RepositoryDatabaseError as error:
                if not await attempts.again(error):
                    raise

    async def _create(
        self,
        values: dict[str, Any],
        filters: Mapping[str, Any],
        include_deleted: bool,
        changes: dict[str, Any] | None,
    ) -> tuple[ModelT, bool]:
        """Insert the row; if another writer's row refuses it, that row (updated with
        ``changes`` unless they are None) instead."""
        instance = self.model(**values)
        winner: ModelT | None = None
        async with TranslatedUnit(self.session, self.model):
            try:
                async with self.session.begin_nested():
                    self.session.add(instance)
                    await self.session.flush()
            except sa_exc.IntegrityError as error:
                if not is_unique_violation(error):
                    raise
                # Another writer won. Read its row with a lock (_find_one says why), held
                # until the unit's transaction ends.
                winner = await self._find_one(
                    filters, include_deleted, lock="share" if changes is None else "update"
                )
                if winner is None:
                    raise
                if changes:
                    await self._apply(winner, changes)
            else:
                new_id = getattr(instance, self._info.pk_attr)
                self._effects.wrote(EventType.CREATED, [new_id], [values])
        if winner is not None:
            return await self._fresh(winner), False
        return await self._fresh(instance), True

    async def _update(
        self, filters: Mapping[str, Any], include_deleted: bool, changes: dict[str, Any]
    ) -> ModelT | None:
        async with TranslatedUnit(self.session, self.model):
            instance = await self._find_one(filters, include_deleted, lock="update")
            if instance is None:
                return None
            if changes:
                await self._apply(instance, changes)
        return await self._fresh(instance)

    async def _apply(self, instance: ModelT, changes: dict[str, Any]) -> None:
        for attr, value in changes.items():
            setattr(instance, attr, value)
        await self.session.flush()
        row_id = getattr(instance, self._info.pk_attr)
        self._effects.wrote(EventType.UPDATED, [row_id], [changes])
