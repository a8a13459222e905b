"""Turning what users pass (mappings, pydantic models, dataclasses, model instances) into
validated column dicts, so that bad records are refused one by one before any SQL runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm.attributes import instance_state

from ._column_kinds import kind_of
from ._fast_records import QuickBatchCheck
from ._results import validation_problems
from .exceptions import RecordValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._fast_records import PreparedRows
    from ._model import ModelInfo

__all__ = ["RecordPreparer", "to_mapping"]


def to_mapping(
    obj: Any, *, model: type[Any] | None = None, partial: bool = False
) -> dict[str, Any]:
    """A plain dict of field -> value from any supported input shape.

    ``partial`` (updates) keeps only the fields a pydantic model was given explicitly, so an
    update schema with all-optional fields changes only what the caller set.
    """
    if type(obj) is dict or isinstance(obj, Mapping):  # the exact check skips an ABC lookup
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and hasattr(type(obj), "model_fields"):
        explicitly_set: set[str] = getattr(obj, "model_fields_set", set())
        data: dict[str, Any] = dump(exclude_unset=partial)
        # A None default on a schema field must not override a database default.
        return {k: v for k, v in data.items() if v is not None or k in explicitly_set}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if model is not None and isinstance(obj, model):
        loaded = instance_state(obj).dict
        return {k: v for k, v in loaded.items() if not k.startswith("_")}
    raise RecordValidationError(
        {"<record>": f"expected a mapping, pydantic model or dataclass, got {type(obj).__name__}"}
    )


class RecordPreparer:
    """Validates records against the model's columns (and a pydantic schema, if any); what
    each column accepts, and how a value is stored, is its kind's (``_column_kinds``)."""

    def __init__(
        self,
        info: ModelInfo,
        *,
        create_schema: type[Any] | None = None,
        update_schema: type[Any] | None = None,
    ) -> None:
        self._info = info
        self._create_schema = _pydantic_or_none(create_schema)
        self._update_schema = _pydantic_or_none(update_schema)
        kinds = {attr: kind_of(column.type) for attr, column in info.columns.items()}
        self._checks = {attr: kind.check for attr, kind in kinds.items()}
        self._converts = {attr: kind.convert for attr, kind in kinds.items() if kind.convert}
        self._nullable = {attr: bool(column.nullable) for attr, column in info.columns.items()}
        # Almost every model names its attributes after its columns; then there is nothing
        # to translate per record.
        self._keys_are_names = all(key == attr for attr, key in info.column_keys.items())
        self.quick_batch: Callable[[Sequence[Any]], PreparedRows | None] = _no_quick_look
        """A look at a whole batch of creates that accepts the usual batch at once."""
        if self._keys_are_names:
            quick = QuickBatchCheck(info, kinds)
            self.quick_batch = quick
            if self._create_schema is not None:
                from ._schema_batch import SchemaBatch  # imports pydantic

                self.quick_batch = SchemaBatch(self._create_schema, quick)

    def for_create(self, record: Any, index: int | None = None) -> dict[str, Any]:
        """Attribute-keyed values for one new row; raises RecordValidationError."""
        data = self._through_schema(self._create_schema, record, partial=False, index=index)
        problems = self._problems(data)
        for attr in self._info.required:
            if attr not in data:
                problems.setdefault(attr, "is required (NOT NULL, no default)")
        if problems:
            raise RecordValidationError(problems, index=index)
        pk = self._info.pk_attr
        if pk in data and data[pk] is None:
            del data[pk]
        return data

    def for_update(self, changes: Any) -> dict[str, Any]:
        """Attribute-keyed values for an update; raises RecordValidationError."""
        data = self._through_schema(self._update_schema, changes, partial=True, index=None)
        problems = self._problems(data)
        if self._info.pk_attr in data:
            problems[self._info.pk_attr] = "the primary key cannot be updated"
        if problems:
            raise RecordValidationError(problems)
        return data

    def _through_schema(
        self, schema: type[Any] | None, record: Any, *, partial: bool, index: int | None
    ) -> dict[str, Any]:
        if schema is None or not isinstance(record, Mapping):
            return to_mapping(record, model=self._info.model, partial=partial)
        from pydantic import ValidationError  # only reachable when pydantic is installed

        try:
            validated = schema.model_validate(record)
        except ValidationError as exc:
            raise RecordValidationError(validation_problems(exc), index=index) from None
        data = to_mapping(validated, partial=partial)
        # Keys the schema does not declare are kept, so they are checked, not silently lost.
        extra = {k: v for k, v in record.items() if k not in schema.model_fields}
        return {**extra, **data}

    def _problems(self, data: dict[str, Any]) -> dict[str, str]:
        """What is wrong with ``data``; values that fit are converted in place as they are
        stored (datetimes to UTC, ``_column_kinds``)."""
        problems: dict[str, str] = {}
        converted: dict[str, Any] = {}
        checks = self._checks
        for attr, value in data.items():
            if attr not in checks:
                problems[attr] = f"{self._info.model.__name__} has no such column"
            elif value is None:
                if not self._nullable[attr] and attr != self._info.pk_attr:
                    problems[attr] = "may not be None (NOT NULL column)"
            else:
                check = checks[attr]
                why = None if check is None else check(value)
                if why is not None:
                    problems[attr] = why
                elif attr in self._converts:
                    converted[attr] = self._converts[attr](value)
        data.update(converted)
        return problems

    def to_columns(self, data: dict[str, Any]) -> dict[str, Any]:
        """Attribute-keyed values -> Core column keys (they differ only for renamed columns)."""
        if self._keys_are_names:
            return data
        keys = self._info.column_keys
        return {keys[attr]: value for attr, value in data.items()}


def _no_quick_look(_batch: Sequence[Any]) -> None:
    return None


def _pydantic_or_none(schema: type[Any] | None) -> type[Any] | None:
    if schema is not None and hasattr(schema, "model_validate") and hasattr(schema, "model_fields"):
        return schema
    return None
