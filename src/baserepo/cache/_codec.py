"""Rows to bytes and back: orjson, and instances rebuilt without ``__init__``.

A cached result must be the same type and content as an uncached one, so each column gets a
decoder that restores what JSON flattens (datetimes, Decimal, UUID, enums, bytes,
intervals). Instances are made the way SQLAlchemy loads them: ``__new__`` plus the attribute
dict, then marked detached with their identity key, which is about four times cheaper than
``Model(**row)`` (NOTES.md item 5).
"""

from __future__ import annotations

import hashlib
import operator
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import inspect

from .._column_kinds import kind_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._column_kinds import ColumnKind
    from .._model import ModelInfo

__all__ = ["RowCodec", "UnsupportedColumn"]


_EAGER_LOADING = frozenset({"joined", "selectin", "subquery", "immediate"})


class UnsupportedColumn(Exception):
    """A column type whose values could not be restored exactly; the model is not cached."""


def _converters(kind: ColumnKind, sql_type: Any) -> tuple[Any, Any]:
    """(encode, decode) for one column kind; ``None`` means orjson keeps the value as is."""
    if not kind.cacheable:
        raise UnsupportedColumn(f"{type(sql_type).__name__} ({kind.name})")
    return kind.encode, kind.decode


class RowCodec:
    """Encodes loaded instances of one model as rows of column values, and back."""

    def __init__(self, info: ModelInfo) -> None:
        self._model = info.model
        self._mapper = inspect(info.model)
        # A cached row carries columns only: a relationship a query would load with the row
        # (joined, selectin...) would be missing on a hit, which a cache must never show.
        eager = [
            relationship.key
            for relationship in self._mapper.relationships
            if relationship.lazy in _EAGER_LOADING
        ]
        if eager:
            raise UnsupportedColumn(f"relationship {eager[0]!r} loads with the row (eagerly)")
        self._attrs = list(info.columns)
        types = [column.type for column in info.columns.values()]
        kinds = [kind_of(sql_type) for sql_type in types]
        pairs = [_converters(kind, sql_type) for kind, sql_type in zip(kinds, types, strict=True)]
        # Rows are stored positionally, so two deployments of the model whose columns differ
        # (a column added, dropped, reordered or retyped, during a rolling deploy) must never
        # read each other's entries: the layout is part of every entry's key.
        described = "|".join(
            f"{attr}:{column.name}:{kind.name}:{type(column.type).__name__}"
            for (attr, column), kind in zip(info.columns.items(), kinds, strict=True)
        )
        self.layout = hashlib.blake2b(described.encode(), digest_size=4).hexdigest()
        self._encoders = [encode for encode, _ in pairs]
        self._decoders = [decode for _, decode in pairs]
        self._plain_encode = all(e is None for e in self._encoders)
        self._mutable = any(kind.mutable for kind in kinds)
        # itemgetter(*attrs)(instance.__dict__) reads a row's values in one C call.
        self._values_of = (
            operator.itemgetter(*self._attrs)
            if len(self._attrs) > 1
            else (lambda loaded: (loaded[self._attrs[0]],))
        )
        self._decoded_columns = [
            (index, attr, decode)
            for index, (attr, (_, decode)) in enumerate(zip(self._attrs, pairs, strict=True))
            if decode is not None
        ]
        self._build = _compile_builder(
            info.model,
            self._mapper.class_manager.new_instance,
            self._attrs,
            self._decoded_columns,
            self._attrs.index(info.pk_attr),
        )

    def snapshot(self, instances: list[Any]) -> Callable[[], bytes]:
        """Capture the rows now, serialise them later (off the caller's path).

        Column values of immutable types are captured by reference; a model with mutable
        ones (JSON, ARRAY) is serialised at once, since the caller could change them.
        """
        if self._mutable:
            payload = self.encode(instances)
            return lambda: payload
        rows = self._rows(instances)
        return lambda: self._serialize(rows)

    def encode(self, instances: list[Any]) -> bytes:
        return self._serialize(self._rows(instances))

    def _rows(self, instances: list[Any]) -> list[tuple[Any, ...]]:
        values_of = self._values_of
        try:
            return [values_of(instance.__dict__) for instance in instances]
        except KeyError as missing:
            # A deferred or expired column: caching a partial row would serve holes.
            raise UnsupportedColumn(f"column {missing} not loaded") from None

    def _serialize(self, rows: list[tuple[Any, ...]]) -> bytes:
        if not self._plain_encode:
            encoders = self._encoders
            rows = [
                tuple(
                    v if encode is None or v is None else encode(v)
                    for v, encode in zip(row, encoders, strict=True)
                )
                for row in rows
            ]
        try:
            return orjson.dumps(rows)
        except TypeError as error:
            # orjson.JSONEncodeError (a TypeError): e.g. an integer past 64 bits inside a
            # JSON document. Such a result is not cached; the read itself must not fail.
            raise UnsupportedColumn(str(error)) from None

    def decode(self, payload: bytes) -> list[Any]:
        return self._build(orjson.loads(payload))


def _compile_builder(
    model: type[Any],
    new_instance: Callable[[], Any],
    attrs: list[str],
    decoded_columns: list[tuple[int, str, Callable[[Any], Any]]],
    pk_index: int,
) -> Callable[[list[list[Any]]], list[Any]]:
    """A row-list -> instances function with the per-column decoding unrolled.

    The hit path runs this for every cached row, and a generic loop over the decoders cost
    a third of a hit; generating the code once per model (as dataclasses and SQLAlchemy do)
    leaves only the work itself.
    """
    lines = [
        "def build(rows):",
        "    instances = []",
        "    for row in rows:",
        "        instance = new_instance()",
        "        loaded = instance.__dict__",
        "        loaded.update(zip(attrs, row))",
    ]
    namespace: dict[str, Any] = {"new_instance": new_instance, "attrs": attrs, "model": model}
    for index, attr, decode in decoded_columns:
        namespace[f"decode_{index}"] = decode
        lines += [
            f"        value = row[{index}]",
            "        if value is not None:",
            f"            loaded[{attr!r}] = decode_{index}(value)",
        ]
    # What make_transient_to_detached() does for a fully loaded row, at a fifth of the
    # cost: an identity key makes the instance "detached", as if its session had closed.
    lines += [
        f"        loaded['_sa_instance_state'].key = (model, (row[{pk_index}],), None)",
        "        instances.append(instance)",
        "    return instances",
    ]
    exec("\n".join(lines), namespace)
    builder: Callable[[list[list[Any]]], list[Any]] = namespace["build"]
    return builder
