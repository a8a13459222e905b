"""Reads: by key, by filters, counts; through the query cache when one is configured."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.sql.base import ExecutableOption

from .._identity import adopt, has_pending_changes
from .._lookups import build_filters, follows_relationships, typed_filters
from .._ordering import OrderBy, order_clauses
from .._statements import read_all, read_one
from ..cache._shapes import COUNT, ONE, ROWS, Shape
from .state import (
    CreateSchemaT,
    Filters,
    IdT,
    ModelT,
    RepositoryState,
    T,
    UpdateSchemaT,
    merge_filters,
)

if typing.TYPE_CHECKING:
    import builtins
    from collections.abc import Awaitable, Callable, Iterable


__all__ = ["LoaderOptions", "ReadMethods", "loader_options"]

LoaderOptions = Sequence[ExecutableOption] | None
"""What ``options=`` takes: SQLAlchemy loader options (``selectinload``, ``load_only``...)."""


def loader_options(options: LoaderOptions) -> tuple[ExecutableOption, ...]:
    """The options as a tuple, checked before any I/O; empty when there are none."""
    if options is None:
        return ()
    if isinstance(options, ExecutableOption) or not isinstance(options, Sequence):
        raise TypeError(
            "options must be a list of SQLAlchemy loader options, e.g. "
            f"options=[selectinload(User.team)]; got {type(options).__name__}"
        )
    for option in options:
        if not isinstance(option, ExecutableOption):
            raise TypeError(
                f"options: {option!r} is not a SQLAlchemy loader option "
                "(selectinload, joinedload, load_only, raiseload...)"
            )
    return tuple(options)


class ReadMethods(RepositoryState[ModelT, CreateSchemaT, UpdateSchemaT, IdT]):
    """get, get_many, list, count and exists."""

    async def get(
        self, id: IdT, *, include_deleted: bool = False, options: LoaderOptions = None
    ) -> ModelT | None:
        """The row with primary key ``id``, or None (also when it is soft-deleted).

        ``options``: SQLAlchemy loader options (``[selectinload(User.team)]``); a read with
        options reads the primary past the cache (docs/cache.md).
        """
        chosen = loader_options(options)

        async def load() -> ModelT | None:
            query = self._soft.hide(select(self.model).where(self._pk == id), {}, include_deleted)
            if chosen:
                # The primary, as for get_many and list (_read_rows says why).
                chosen_row: ModelT | None = await read_one(self.session, query.options(*chosen))
                return chosen_row
            found: ModelT | None = await self._reads.one(query)
            return found

        if chosen:
            return await self._past_cache(load)
        spec = {"id": id, "include_deleted": include_deleted}
        return await self._through_cache("get", spec, load, ONE)

    async def get_many(
        self, ids: Iterable[IdT], *, include_deleted: bool = False, options: LoaderOptions = None
    ) -> builtins.list[ModelT]:
        """Rows for ``ids`` in the order given; repeated and missing ids are left out.

        ``options``: SQLAlchemy loader options, as for :meth:`get`.
        """
        chosen = loader_options(options)
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []

        async def load() -> builtins.list[ModelT]:
            query = self._soft.hide(
                select(self.model).where(self._pk.in_(wanted)), {}, include_deleted
            )
            rows = await self._read_rows(query, chosen)
            found = {getattr(row, self._info.pk_attr): row for row in rows}
            return [found[i] for i in wanted if i in found]

        if chosen:
            return await self._past_cache(load)
        spec = {"ids": wanted, "include_deleted": include_deleted}
        return await self._through_cache("get_many", spec, load, ROWS)

    async def list(
        self,
        filters: Filters | None = None,
        /,
        *,
        limit: int | None = None,
        offset: int | None = None,
        order_by: OrderBy | None = None,
        include_deleted: bool = False,
        options: LoaderOptions = None,
        **filter_kwargs: Any,
    ) -> builtins.list[ModelT]:
        """Rows matching ``field__lookup=value`` filters, ordered (primary key last), paged.

        ``options``: SQLAlchemy loader options, as for :meth:`get`.
        """
        chosen = loader_options(options)
        # Checked and converted before any cache lookup: age="42" and age=42 are one entry.
        merged = typed_filters(self._info, merge_filters(filters, filter_kwargs))
        condition = build_filters(self._info, merged, typed=True)
        ordering = order_clauses(self._info, order_by)

        async def load() -> builtins.list[ModelT]:
            query = self._soft.hide(select(self.model).where(condition), merged, include_deleted)
            query = query.order_by(*ordering)
            if limit is not None:
                query = query.limit(limit)
            if offset:
                query = query.offset(offset)
            return await self._read_rows(query, chosen)

        if chosen:
            return await self._past_cache(load)
        spec = {
            "filters": merged,
            "limit": limit,
            "offset": offset,
            "order_by": [order_by] if isinstance(order_by, str) else order_by,
            "include_deleted": include_deleted,
        }
        return await self._through_cache("list", spec, load, ROWS)

    async def count(
        self,
        filters: Filters | None = None,
        /,
        *,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> int:
        """How many rows match the filters."""
        merged = typed_filters(self._info, merge_filters(filters, filter_kwargs))
        condition = build_filters(self._info, merged, typed=True)

        async def load() -> int:
            query = select(func.count()).select_from(self._info.table).where(condition)
            query = self._soft.hide(query, merged, include_deleted)
            return int(await self._reads.one(query) or 0)

        spec = {"filters": merged, "include_deleted": include_deleted}
        return await self._through_cache("count", spec, load, COUNT)

    async def exists(
        self,
        filters: Filters | None = None,
        /,
        *,
        include_deleted: bool = False,
        **filter_kwargs: Any,
    ) -> bool:
        merged = merge_filters(filters, filter_kwargs)
        query = select(self._pk).where(self._where(merged))
        query = self._soft.hide(query, merged, include_deleted).limit(1)
        return await self._reads.one(query) is not None

    async def _read_rows(self, query: Any, chosen: tuple[Any, ...]) -> builtins.list[ModelT]:
        if chosen:
            # The primary, in this session: a replica's rows are adopted column by column,
            # which would drop the relationships the options loaded.
            rows: builtins.list[ModelT] = await read_all(self.session, query.options(*chosen))
            return rows
        return await self._reads.all(query)

    async def _past_cache(self, load: Callable[[], Awaitable[T]]) -> T:
        # A cached row holds columns only: a hit could not honour selectinload (the
        # relationship would load lazily, or raise), and a load_only row stored for a plain
        # read would lack columns. So a read with options is never served from the cache nor
        # stored in it.
        if self._cache is not None:
            self._cache.counters.bypasses += 1
        return await load()

    async def _through_cache(
        self,
        operation: str,
        spec: dict[str, Any],
        load: Callable[[], Awaitable[T]],
        shape: Shape,
    ) -> T:
        cache = self._cache
        if cache is None:
            return await load()
        if follows_relationships(self._info, spec.get("filters") or {}):
            # The result depends on another model's rows too, whose writes do not move this
            # model's generation: an entry could outlive a rename of the team. Never stored.
            cache.counters.bypasses += 1
            return await load()
        codec = cache.codec
        if codec is None:
            return await load()
        if has_pending_changes(self.session):
            # The query would flush them first and read them back: uncommitted rows, which
            # must neither be stored for others nor be answered by an entry that predates them.
            cache.counters.bypasses += 1
            return await load()
        prepare, decode = shape(codec, lambda rows: adopt(self.session, self._info, rows))
        load = self._reads.filling(load)
        return await cache.reads.fetch(self.session, operation, spec, load, prepare, decode)
