"""Keeping the session's identity map true to the database.

SQLAlchemy returns the object already in the identity map for a loaded row and leaves its
attributes alone, and a Core ``UPDATE``/``DELETE`` (what the bulk engine sends) never touches
the identity map. Left at that, a session that keeps objects across writes (the common
``expire_on_commit=False``) would go on seeing the values from before a ``bulk_update``, and a
cache fill made from those objects would hand them to every other process.

Three rules keep what a caller holds equal to what the database holds:

- after a write by statement, every object of the model *already in the identity map* for an
  affected key gets the written values as its committed state (soft delete: its stamp), and
  a hard-deleted one leaves the session; the cost is one dict look-up per key when the map
  holds objects, nothing when it is empty;
- a read refreshes the objects it returns (``populate_existing``), unless that would discard
  changes the caller has not flushed (``autoflush`` off); such a read is not cached;
- a cache hit yields the session's objects, as a query would: the one already in the identity
  map (refreshed from the entry), otherwise a new persistent one joined to the session.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import attributes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from ._model import ModelInfo

__all__ = [
    "adopt",
    "with_onupdate_values",
    "can_refresh",
    "forget_deleted",
    "has_pending_changes",
    "sync_changed",
]


def _in_session(sync_session: Session, info: ModelInfo, ids: Iterable[Any]) -> list[Any]:
    """The objects of the identity map for ``ids``: a look-up per key, none when it is empty."""
    identity_map = sync_session.identity_map
    held = len(identity_map)
    if not held:
        return []
    identity_class = sa_inspect(info.model)._identity_class
    keys = ids if isinstance(ids, list | tuple) else list(ids)
    if held < len(keys):
        # A big batch and a small session: walk the session, not the batch.
        wanted = set(keys)
        walked = []
        for state in identity_map.all_states():
            identity = state.key
            if identity is not None and identity[0] is identity_class:
                instance = state.obj()
                if instance is not None and identity[1][0] in wanted:
                    walked.append(instance)
        return walked
    found = []
    for key in keys:
        instance = identity_map.get((identity_class, (key,), None))
        if instance is not None:
            found.append(instance)
    return found


def with_onupdate_values(info: ModelInfo, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (by column key) plus the Python-side ``onupdate`` values of the other columns.

    The statement would compute them itself; computed here, once, they are known and can be
    given to the objects in the session (an ``updated_at`` stamp) instead of being expired,
    which in an async session would make the next attribute access fail.
    """
    merged = dict(values)
    for column in info.columns.values():
        default = column.onupdate
        if column.key in merged or default is None:
            continue
        if default.is_scalar:
            merged[column.key] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            try:
                # SQLAlchemy wraps a no-argument function as ``fn(context)``; one that reads
                # the context needs the statement's, so it is left to the statement.
                merged[column.key] = default.arg(None)  # type: ignore[attr-defined]
            except Exception:  # any failure only means "not computable here"
                continue
    return merged


def sync_changed(
    session: AsyncSession, info: ModelInfo, ids: Sequence[Any], values: Mapping[str, Any]
) -> None:
    """Give the objects in the map for ``ids`` the column values just written.

    ``values`` is keyed by column key, as sent in the statement. Columns the statement also
    changed on its own (``onupdate``) are expired, so the next read loads them.
    """
    sync_session = session.sync_session
    instances = _in_session(sync_session, info, ids)
    if not instances:
        return
    attr_of = {key: attr for attr, key in info.column_keys.items()}
    written = {attr_of[key]: value for key, value in values.items() if key in attr_of}
    side_effects = [
        attr
        for attr, column in info.columns.items()
        if attr not in written and (column.onupdate is not None or column.server_onupdate)
    ]
    for instance in instances:
        for attr, value in written.items():
            attributes.set_committed_value(instance, attr, value)
        if side_effects:
            sync_session.expire(instance, side_effects)


def forget_deleted(session: AsyncSession, info: ModelInfo, ids: Sequence[Any]) -> None:
    """Hard-deleted rows leave the session, as after SQLAlchemy's own ORM-enabled delete."""
    sync_session = session.sync_session
    for instance in _in_session(sync_session, info, ids):
        sync_session.expunge(instance)


def has_pending_changes(session: AsyncSession) -> bool:
    """Objects added, changed or deleted in the session and not flushed yet."""
    sync_session = session.sync_session
    return bool(sync_session.new or sync_session.deleted or sync_session.dirty)


def can_refresh(session: AsyncSession) -> bool:
    """May a read overwrite the objects it loads with the database's values?

    With autoflush (the default) every pending change reaches the database before the query,
    so the rows already hold them. Without it, a refresh would throw unflushed edits away.
    """
    return bool(session.sync_session.autoflush) or not has_pending_changes(session)


def adopt(session: AsyncSession, info: ModelInfo, instances: list[Any]) -> list[Any]:
    """Cached instances as the session's objects, exactly as a query would return them.

    ``instances`` come from the cache codec: fully loaded, with their identity key and no
    session. One already in the identity map is returned instead, its committed state set to
    the cached values (what ``populate_existing`` does on a miss); the others join the session
    as persistent objects the way SQLAlchemy's loader attaches a new row.
    """
    sync_session = session.sync_session
    identity_map = sync_session.identity_map
    hash_key = sync_session.hash_key
    dispatch = sa_inspect(info.model).class_manager.dispatch
    on_load = dispatch.load if dispatch.load else None
    on_refresh = dispatch.refresh if dispatch.refresh else None
    columns = list(info.columns)
    values_of = itemgetter(*columns) if len(columns) > 1 else (lambda d: (d[columns[0]],))
    # SQLAlchemy's loader does the same, with the same internal calls (loading.py: "attach
    # instance to session", and _commit_all after populate_existing); the public spellings
    # (session.add, set_committed_value) cost twenty times more per row on this, the hit path.
    add_unpresent = identity_map._add_unpresent
    if not len(identity_map):
        # A session that holds nothing (a request's): every row is new, and a result never
        # holds one key twice, so there is nothing to look up.
        for instance in instances:
            state = attributes.instance_state(instance)
            state.session_id = hash_key
            add_unpresent(state, state.key)  # type: ignore[arg-type]
            if on_load is not None:
                on_load(state, None)
        return instances
    adopted = []
    for instance in instances:
        state = attributes.instance_state(instance)
        key = state.key
        existing = identity_map.get(key) if len(identity_map) else None  # type: ignore[arg-type]
        if existing is None:
            state.session_id = hash_key
            add_unpresent(state, key)  # type: ignore[arg-type]
            if on_load is not None:
                on_load(state, None)
            adopted.append(instance)
            continue
        existing_state = attributes.instance_state(existing)
        existing_dict = existing.__dict__
        existing_dict.update(zip(columns, values_of(instance.__dict__), strict=True))
        if existing_state.modified or existing_state.expired_attributes:
            existing_state._commit_all(existing_dict, identity_map)
        if on_refresh is not None:
            on_refresh(existing_state, None, columns)
        adopted.append(existing)
    return adopted
