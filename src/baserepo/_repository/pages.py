"""Keyset pagination: ``page()``, through the query cache like ``list``."""

from __future__ import annotations

import typing
from typing import Any

from sqlalchemy import and_, select

from .._keyset import Page, after_condition, decode_cursor, encode_cursor, keyset_order, order_terms
from .._lookups import build_filters, typed_filters
from ..cache._shapes import ROWS
from .reads import ReadMethods
from .state import CreateSchemaT, Filters, IdT, ModelT, UpdateSchemaT, merge_filters

if typing.TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence

__all__ = ["PageMethods"]


class PageMethods(ReadMethods[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """page."""

    async def page(
        self,
        filters: Filters | None = None,
        /,
        *,
        limit: int = 50,
        after: str | None = None,
        order_by: str | Sequence[str] | None = None,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> Page[ModelT]:
        """Up to ``limit`` rows matching the filters, after the row ``after`` points at.

        ``order_by`` names NOT NULL fields (``"-created_at"``); the primary key always ends
        the order. Each page continues from the last row of the one before, so walking
        ``next_cursor`` until it is None returns every row once even while rows are inserted
        or deleted. A damaged or foreign cursor raises InvalidCursorError.

        Example::

            page = await repo.page(limit=50, order_by="-created_at", is_active=True)
            while page.next_cursor:
                page = await repo.page(limit=50, after=page.next_cursor,
                                       order_by="-created_at", is_active=True)
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        merged = typed_filters(self._info, merge_filters(filters, filter_kwargs))
        order = keyset_order(self._info, order_by)
        condition = build_filters(self._info, merged, typed=True)
        if after is not None:
            condition = and_(
                condition,
                after_condition(self._info, order, decode_cursor(self._info, order, after)),
            )

        async def load() -> builtins.list[ModelT]:
            query = self._soft.hide(select(self.model).where(condition), merged, include_deleted)
            # One row more than asked: whether it exists says whether there is a next page.
            return await self._reads.all(
                query.order_by(*order_terms(self._info, order)).limit(limit + 1)
            )

        spec = {
            "filters": merged,
            "limit": limit,
            "after": after,
            "order_by": order,
            "include_deleted": include_deleted,
        }
        rows = await self._through_cache("page", spec, load, ROWS)
        items = rows[:limit]
        more = len(rows) > limit
        return Page(items, encode_cursor(self._info, order, items[-1]) if more else None)
