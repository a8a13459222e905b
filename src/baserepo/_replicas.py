"""Reads on a read replica: which of a repository's reads may go there, and when a cache fill
may store what it read there.

A streaming replica replays the primary's write-ahead log some milliseconds (or, paused or
overloaded, much longer) behind it. Two rules keep that lag from showing:

- **A fill never stores rows older than its generation.** The cache reader reads the model's
  generation first; a write bumps it only after its commit. A fill on the replica first asks
  the primary for its current WAL position, *after* that generation read, so the position is
  at or past the commit record of every write that produced the generation, then checks on
  the replica that ``replayed >= position`` before its query. The query runs in a READ
  COMMITTED transaction, so its snapshot is taken after that check and holds those commits.
  If the replica is behind, the read goes to the primary (and fills from there, as without a
  replica). The check needs nothing from the writers: a process without the replica setting,
  an ORM write, raw SQL followed by ``invalidate_cache()`` are all covered.
- **Read-your-writes.** Once a session has written (a repository write, an ORM flush, any
  statement through ``session.execute`` that is not a SELECT) its reads go to the primary for
  the rest of its life, as do reads in a transaction the caller began (they belong to it) and
  reads with unflushed changes. Uncached reads of a session that has not written go to the
  replica as they are: they see what it has replayed (ordinary replica staleness).

Rows read on the replica become the session's own objects (``_identity.adopt``), as a cache
hit does. A replica that cannot be reached is skipped: the read goes to the primary.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ._errors import is_unavailable, translate
from ._identity import adopt, has_pending_changes
from ._statements import read_all, read_one
from ._transactions import caller_owns_transaction
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
    from sqlalchemy.sql import Executable

    from ._model import ModelInfo

__all__ = ["ReadReplica", "Reader", "WalPositions", "register_wal_positions"]

logger = logging.getLogger("baserepo.replicas")

T = TypeVar("T")

ReadReplica = AsyncEngine | async_sessionmaker[AsyncSession]
"""What ``read_replica=`` takes: the replica's engine, or a sessionmaker bound to it."""

_WROTE_KEY = "baserepo.wrote_to_primary"
_FILLING: ContextVar[bool] = ContextVar("baserepo.replica_filling", default=False)


@dataclass(frozen=True, slots=True)
class WalPositions:
    """How one database reports write-ahead-log positions; registered by its dialect module."""

    current: Callable[[], Executable]
    """A statement giving the primary's current WAL position, as text."""
    replayed: Callable[[str], Executable]
    """A statement giving True when the replica has replayed up to that position (False on a
    server that is not replaying: it cannot vouch for anything)."""


_POSITIONS: dict[str, WalPositions] = {}


def register_wal_positions(dialect_name: str, positions: WalPositions) -> None:
    """Let a database's module say how its replicas report how far they have replayed."""
    _POSITIONS[dialect_name] = positions


class Reader:
    """Runs one repository's reads on its session (the primary) or on the read replica."""

    def __init__(self, session: AsyncSession, info: ModelInfo, replica: ReadReplica | None):
        self._session = session
        self._info = info
        self._replica: _Replica | None = None
        if replica is not None:
            self._replica = _checked(session, info, replica)
            _track_primary_writes(session)

    async def one(self, query: Any) -> Any:
        if self._replica is None:
            return await read_one(self._session, query)
        found = await self._routed(self._replica, query, many=False)
        return found[0] if found else None

    async def all(self, query: Any) -> list[Any]:
        if self._replica is None:
            return await read_all(self._session, query)
        return await self._routed(self._replica, query, many=True)

    def filling(self, load: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        """``load`` as the cache calls it: its reads may fill, so they check the replica's
        position first."""
        if self._replica is None:
            return load

        async def checked() -> T:
            token = _FILLING.set(True)
            try:
                return await load()
            finally:
                _FILLING.reset(token)

        return checked

    def wrote(self) -> None:
        """The session writes by a path its listeners do not see (the bulk engine's COPY)."""
        if self._replica is not None:
            self._session.sync_session.info[_WROTE_KEY] = True

    async def _routed(self, replica: _Replica, query: Any, *, many: bool) -> list[Any]:
        session = self._session
        if (
            session.sync_session.info.get(_WROTE_KEY)
            or caller_owns_transaction(session)
            or has_pending_changes(session)
        ):
            return await self._on_primary(query, many=many)
        position = None
        if _FILLING.get():
            # Asked after the cache read the generation: at or past the commit record of
            # every write the generation covers.
            position = await read_one(session, replica.positions.current())
        rows = await replica.read(query, many=many, position=position)
        if rows is None:
            return await self._on_primary(query, many=many)
        if rows and isinstance(rows[0], self._info.model):
            adopted: list[Any] = adopt(session, self._info, rows)
            return adopted
        return rows

    async def _on_primary(self, query: Any, *, many: bool) -> list[Any]:
        if many:
            return await read_all(self._session, query)
        found = await read_one(self._session, query)
        return [] if found is None else [found]


@dataclass(frozen=True, slots=True)
class _Replica:
    maker: async_sessionmaker[AsyncSession]
    positions: WalPositions

    async def read(self, query: Any, *, many: bool, position: str | None) -> list[Any] | None:
        """The rows, or None when the replica has not replayed ``position`` or is down."""
        try:
            # Closing the session at the end detaches the rows with their loaded state,
            # which is what adopt() takes.
            async with self.maker() as replica:
                # READ COMMITTED whatever the replica engine's default: the query's snapshot
                # must be taken after the position check, not at the transaction's start.
                await replica.connection(execution_options={"isolation_level": "READ COMMITTED"})
                if position is not None:
                    replayed = await replica.scalar(self.positions.replayed(position))
                    if not replayed:
                        return None
                result = await replica.execute(query)
                if many:
                    return list(result.scalars())
                found = result.scalar_one_or_none()
                return [] if found is None else [found]
        except Exception as error:
            # A refused connection may come as the driver's OSError, not SQLAlchemy's.
            if is_unavailable(error):
                logger.warning("read replica unavailable, reading the primary: %s", error)
                return None
            if isinstance(error, sa_exc.SQLAlchemyError):
                raise translate(error) from error
            raise


def _checked(session: AsyncSession, info: ModelInfo, replica: ReadReplica) -> _Replica:
    if isinstance(replica, AsyncEngine):
        maker = async_sessionmaker(replica, expire_on_commit=False)
        engine: Any = replica
    elif isinstance(replica, async_sessionmaker):
        maker = replica
        engine = replica.kw.get("bind")
        if engine is None:
            raise ConfigurationError("read_replica: the sessionmaker has no bind (engine)")
    else:
        raise TypeError(
            "read_replica must be an AsyncEngine or an async_sessionmaker, "
            f"got {type(replica).__name__}"
        )
    name = engine.dialect.name
    positions = _POSITIONS.get(name)
    if positions is None:
        supported = ", ".join(sorted(_POSITIONS)) or "none"
        raise ConfigurationError(
            f"read_replica: {name} does not report how far a replica has replayed, so a cache "
            f"fill from it could store old rows; read replicas work on: {supported}"
        )
    try:
        primary = session.sync_session.get_bind(mapper=info.model)
    except sa_exc.UnboundExecutionError:
        primary = None
    if primary is not None and primary.dialect.name != name:
        raise ConfigurationError(
            f"read_replica is a {name} database but the session's is {primary.dialect.name}"
        )
    return _Replica(maker, positions)


def _track_primary_writes(session: AsyncSession) -> None:
    sync_session = session.sync_session
    if sync_session.info.get("baserepo.tracks_primary_writes"):
        return
    sync_session.info["baserepo.tracks_primary_writes"] = True
    # Listeners live as long as the session, not one repository: install them once.
    event.listen(sync_session, "after_flush", _on_flush)
    event.listen(sync_session, "do_orm_execute", _on_execute)


def _on_flush(sync_session: Session, _flush: UOWTransaction) -> None:
    sync_session.info[_WROTE_KEY] = True


def _on_execute(state: ORMExecuteState) -> None:
    # Anything but a SELECT may have written (text() and DDL included): read the primary.
    if not state.is_select:
        state.session.info[_WROTE_KEY] = True
