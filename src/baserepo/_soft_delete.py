"""Soft delete as one policy: which column marks a row deleted, and which statements hide it.

A model has soft delete when it has the column (``deleted_at`` unless the repository names
another). Reads and bulk changes then leave deleted rows out, unless the caller asks for them
(``include_deleted=True``) or names the column in a filter: asking about ``deleted_at`` is
asking about deleted rows (docs/guide.md's cleanup, ``deleted_at__lt`` + ``deleted_at__isnotnull``).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ._lookups import filtered_attrs
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy import ColumnElement, Select

    from ._model import ModelInfo

__all__ = ["SoftDelete"]


class SoftDelete:
    """The soft-delete policy of one model."""

    def __init__(self, info: ModelInfo, column_name: str) -> None:
        self._info = info
        self.column_name = column_name
        self.attr: str | None = info.soft_delete_attr(column_name)
        """The mapped attribute of the soft-delete column; None when the model has none."""

    @property
    def supported(self) -> bool:
        return self.attr is not None

    @property
    def required_attr(self) -> str:
        """The column's attribute; ConfigurationError when the model has no such column."""
        if self.attr is None:
            raise ConfigurationError(
                f"{self._info.model.__name__} has no soft-delete column; "
                "pass soft_delete=False to delete permanently"
            )
        return self.attr

    def resolve(self, soft_delete: bool | None) -> bool:
        """``None`` means soft where the model supports it; ``True`` demands the column."""
        if soft_delete is None:
            return self.supported
        if soft_delete:
            _ = self.required_attr  # raises with a clear message when unsupported
        return soft_delete

    def now(self) -> dt.datetime:
        """The deletion stamp: UTC, aware only for a timezone-aware column."""
        column = self._info.columns[self.required_attr]
        now = dt.datetime.now(dt.UTC)
        return now if getattr(column.type, "timezone", False) else now.replace(tzinfo=None)

    def alive(self) -> ColumnElement[bool]:
        """``deleted_at IS NULL``."""
        clause: ColumnElement[bool] = getattr(self._info.model, self.required_attr).is_(None)
        return clause

    def deleted(self) -> ColumnElement[bool]:
        """``deleted_at IS NOT NULL``."""
        clause: ColumnElement[bool] = getattr(self._info.model, self.required_attr).is_not(None)
        return clause

    def hides(self, filters: Mapping[str, Any], include_deleted: bool) -> bool:
        """Must a statement with these filters leave deleted rows out?"""
        return (
            self.attr is not None
            and not include_deleted
            and self.attr not in filtered_attrs(self._info, filters)
        )

    def hide(
        self, query: Select[Any], filters: Mapping[str, Any], include_deleted: bool
    ) -> Select[Any]:
        return query.where(self.alive()) if self.hides(filters, include_deleted) else query
