"""Single-row writes: create, update, delete (soft or hard) and restore."""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy import inspect as sa_inspect

from .._events import EventType
from .._statements import TranslatedUnit, read_one
from .reads import ReadMethods
from .state import CreateSchemaT, IdT, ModelT, UpdateSchemaT, rowcount

if typing.TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = ["WriteMethods"]


class WriteMethods(ReadMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """create, update, delete and restore (on top of the reads: ``restore`` returns the row
    as ``get`` reads it)."""

    async def create(self, data: CreateSchemaT | Mapping[str, Any]) -> ModelT:
        """Insert one row and return it; raises RecordValidationError or IntegrityConflictError."""
        values = self._preparer.for_create(data)
        instance = self.model(**values)
        async with TranslatedUnit(self.session, self.model):
            self.session.add(instance)
            await self.session.flush()
            new_id = getattr(instance, self._info.pk_attr)
            self._effects.wrote(EventType.CREATED, [new_id], [values])
        return await self._fresh(instance)

    async def update(self, id: IdT, data: UpdateSchemaT | Mapping[str, Any]) -> ModelT | None:
        """Apply ``data`` to the row ``id``; None when there is no such (visible) row."""
        values = self._preparer.for_update(data)
        async with TranslatedUnit(self.session, self.model):
            instance = await read_one(
                self.session, self._soft.hide(select(self.model).where(self._pk == id), {}, False)
            )
            if instance is None:
                return None
            for attr, value in values.items():
                setattr(instance, attr, value)
            await self.session.flush()
            self._effects.wrote(EventType.UPDATED, [id], [values])
        return await self._fresh(instance)

    async def delete(self, id: IdT, soft_delete: bool | None = None) -> bool:
        """Delete the row ``id``: soft (stamp ``deleted_at``) when the model supports it.

        ``soft_delete=None`` means soft when the model has the soft-delete column, hard
        otherwise; ``True`` on a model without it raises ConfigurationError.
        """
        soft = self._soft.resolve(soft_delete)
        statement: Any
        if soft:
            statement = (
                update(self.model)
                .where(self._pk == id, self._soft.alive())
                .values({self._soft.required_attr: self._soft.now()})
            )
        else:
            statement = delete(self.model).where(self._pk == id)
        async with TranslatedUnit(self.session, self.model):
            done = rowcount(await self.session.execute(statement)) > 0
            if done:
                self._effects.wrote(EventType.SOFT_DELETED if soft else EventType.DELETED, [id], [])
        # ORM-enabled statements: SQLAlchemy itself brings the identity map in line
        # (synchronize_session="auto"), for delete() and restore() alike.
        return done

    async def restore(self, id: IdT) -> ModelT | None:
        """Undo a soft delete; None when the row does not exist or is not deleted."""
        statement = (
            update(self.model)
            .where(self._pk == id, self._soft.deleted())
            .values({self._soft.required_attr: None})
        )
        async with TranslatedUnit(self.session, self.model):
            restored = rowcount(await self.session.execute(statement)) > 0
            if restored:
                self._effects.wrote(EventType.RESTORED, [id], [])
        return await self.get(id) if restored else None

    async def _fresh(self, instance: ModelT) -> ModelT:
        # A commit expires instances when the session has expire_on_commit=True; reload now
        # so callers never trigger lazy IO outside the greenlet.
        if sa_inspect(instance).expired:
            await self.session.refresh(instance)
        return instance
