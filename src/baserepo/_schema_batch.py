"""The quick look at a batch of creates, through a pydantic create schema.

Record by record, a schema costs ``model_validate``, ``model_dump`` and the column checks per
record: bulk_create ran at a third of the speed of plain mappings. Here the whole batch is
validated by one ``TypeAdapter(list[Schema])`` call and dumped by another (loops in
pydantic-core), then the rows get the same quick look as mappings (``_fast_records``): the
schema's types make them exactly typed, and the column limits (lengths, ranges, time zones)
are tested a column at a time. Anything else (a record the schema refuses, keys it does not
declare, an unset field left out of some records but not others, a value the quick look does
not take) answers None, and the batch goes record by record through ``for_create``, which
has the last word and the error messages. For a batch both accept, both give the same rows.

Imported only when a repository has a pydantic create schema.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import types
import typing
import uuid
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError
from pydantic.functional_serializers import PlainSerializer, WrapSerializer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._fast_records import PreparedRows, QuickBatchCheck

__all__ = ["SchemaBatch"]

_FIELDS_SET = attrgetter("__pydantic_fields_set__")
_DICT = attrgetter("__dict__")
_AS_DUMPED: tuple[type, ...] = (
    *(str, int, float, bool, bytes, dt.datetime, dt.date, dt.time, dt.timedelta),
    *(decimal.Decimal, uuid.UUID, enum.Enum, type(None)),
)
"""Field types whose values ``model_dump()`` (python mode) returns as they are."""


class SchemaBatch:
    """``check(batch)``: the batch's rows if the schema and the quick look accept every
    record, else None."""

    def __init__(self, schema: type[Any], quick: QuickBatchCheck) -> None:
        self._schema = schema
        self._quick = quick
        fields = schema.model_fields
        self._declared = frozenset(fields)
        self._dump_is_copy = _dump_is_copy(schema)
        self._required = frozenset(name for name, field in fields.items() if field.is_required())
        self._adapter: TypeAdapter[list[Any]] | None = None

    def __call__(self, batch: Sequence[Any]) -> PreparedRows | None:
        if not batch:
            return None
        adapter = self._adapter
        if adapter is None:  # ~50 us: only for repositories that bulk_create
            adapter = self._adapter = TypeAdapter(list[self._schema])  # type: ignore[name-defined]
        models: list[Any]
        types_ = set(map(type, batch))
        if types_ == {dict}:
            if not all(map(self._declared.issuperset, batch)):
                return None  # keys the schema does not declare: for_create checks them
            try:
                models = adapter.validate_python(batch)
            except ValidationError:
                return None
            ours = True
        elif types_ == {self._schema}:
            models = list(batch)  # built (and validated) by the caller
            ours = False
        else:
            return None
        rows: list[dict[str, Any]]
        if self._dump_is_copy:
            # What model_dump() would give, at a twentieth of the cost (its serializer ran a
            # quarter of this path). The instances we just made die with the batch, so their
            # dicts serve as rows; the caller's are copied, as rows may lose keys below.
            dicts = map(_DICT, models)
            rows = list(dicts) if ours else list(map(dict, dicts))
        else:
            rows = adapter.dump_python(models)
        if not self._drop_unset_nones(models, rows):
            return None
        return self._quick(rows)

    def _drop_unset_nones(self, models: Sequence[Any], rows: list[dict[str, Any]]) -> bool:
        """Leave out each key that is None and unset in every record, as ``to_mapping`` does
        record by record (a schema's None default must not override the column's default);
        False if only some records leave it out."""
        fields_sets: list[set[str]] | None = None
        for key in list(rows[0]):
            if key in self._required:
                continue  # always set
            try:
                values = list(map(itemgetter(key), rows))
            except KeyError:
                return False  # rows of several shapes: for_create's to build
            if None not in values:
                continue
            if fields_sets is None:
                fields_sets = list(map(_FIELDS_SET, models))
            unset = [v is None and key not in s for v, s in zip(values, fields_sets, strict=True)]
            if not any(unset):
                continue
            if not all(unset):
                return False
            for row in rows:
                del row[key]
        return True


def _dump_is_copy(schema: type[Any]) -> bool:
    """``model_dump()`` of an instance is a copy of its ``__dict__``: no serializer, no
    computed or extra fields, and every field of a type dumped as it is."""
    decorators = schema.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers:
        return False
    config = schema.model_config
    if schema.model_computed_fields or config.get("extra") == "allow":
        return False
    if config.get("serialize_by_alias"):  # dumped under other keys
        return False
    for field in schema.model_fields.values():
        if field.exclude or getattr(field, "exclude_if", None) is not None:
            return False  # left out of the dump
        if any(isinstance(m, PlainSerializer | WrapSerializer) for m in field.metadata):
            return False
        annotation = field.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members: tuple[Any, ...] = typing.get_args(annotation)
        else:
            members = (annotation,)
        if not all(isinstance(m, type) and issubclass(m, _AS_DUMPED) for m in members):
            return False
    return True
