"""Turning what users pass (mappings, pydantic models, dataclasses, model instances) into
validated column dicts, so that bad records are refused one by one before any SQL runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, types
from sqlalchemy.orm.attributes import instance_state

from .exceptions import RecordValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._fast_records import PreparedRows
    from ._model import ModelInfo

__all__ = ["RecordPreparer", "integer_bounds", "to_mapping"]

Check = Callable[[Any], str | None]
"""Returns why a non-None value does not fit the column, or None when it fits."""


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
    """Validates records against the model's columns (and a pydantic schema, if any)."""

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
        self._checks = {attr: _check_for(column) for attr, column in info.columns.items()}
        self._nullable = {attr: bool(column.nullable) for attr, column in info.columns.items()}
        # Almost every model names its attributes after its columns; then there is nothing
        # to translate per record.
        self._keys_are_names = all(key == attr for attr, key in info.column_keys.items())
        self.quick_batch: Callable[[Sequence[Any]], PreparedRows | None] = _no_quick_look
        """A look at a whole batch of creates that accepts the usual batch at once."""
        if self._create_schema is None and self._keys_are_names:
            from ._fast_records import QuickBatchCheck

            self.quick_batch = QuickBatchCheck(info, self._checks)

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
            problems = {
                ".".join(str(p) for p in err["loc"]) or "<record>": err["msg"]
                for err in exc.errors()
            }
            raise RecordValidationError(problems, index=index) from None
        data = to_mapping(validated, partial=partial)
        # Keys the schema does not declare are kept, so they are checked, not silently lost.
        extra = {k: v for k, v in record.items() if k not in schema.model_fields}
        return {**extra, **data}

    def _problems(self, data: Mapping[str, Any]) -> dict[str, str]:
        problems: dict[str, str] = {}
        for attr, value in data.items():
            check = self._checks.get(attr)
            if check is None:
                problems[attr] = f"{self._info.model.__name__} has no such column"
            elif value is None:
                if not self._nullable[attr] and attr != self._info.pk_attr:
                    problems[attr] = "may not be None (NOT NULL column)"
            else:
                why = check(value)
                if why is not None:
                    problems[attr] = why
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


def _expect(*accepted: type, refuse: tuple[type, ...] = ()) -> Check:
    names = " or ".join(t.__name__ for t in accepted)

    def check(value: Any) -> str | None:
        if isinstance(value, accepted) and not isinstance(value, refuse):
            return None
        return f"expected {names}, got {type(value).__name__} {value!r:.60}"

    return check


def _check_for(column: Column[Any]) -> Check:
    sql_type = column.type
    if isinstance(sql_type, types.TypeDecorator | types.JSON | types.ARRAY | types.PickleType):
        return lambda _value: None  # these accept their own Python shapes; let them decide
    if isinstance(sql_type, types.Boolean):
        return _expect(bool)
    if isinstance(sql_type, types.Enum):
        return _enum_check(sql_type)
    if isinstance(sql_type, types.String):
        return _string_check(sql_type.length)
    if isinstance(sql_type, types.Integer):
        return _integer_check(sql_type)
    if isinstance(sql_type, types.Numeric):
        return _numeric_check(sql_type)
    if isinstance(sql_type, types.DateTime):
        return _expect(dt.datetime)
    if isinstance(sql_type, types.Date):
        return _expect(dt.date, refuse=(dt.datetime,))
    if isinstance(sql_type, types.Time):
        return _expect(dt.time)
    if isinstance(sql_type, types.Interval):
        return _expect(dt.timedelta)
    if isinstance(sql_type, types.Uuid):
        return _uuid_check
    if isinstance(sql_type, types._Binary):
        return _expect(bytes, bytearray, memoryview)
    return lambda _value: None


# Out-of-range numbers are refused here, not left to the database: MariaDB's INSERT IGNORE
# (ignore_conflicts) downgrades the error to a warning and silently stores the nearest value.
def integer_bounds(sql_type: types.Integer) -> tuple[int, int]:
    """The smallest and largest value the column holds."""
    bits = (
        16
        if isinstance(sql_type, types.SmallInteger)
        else 64
        if isinstance(sql_type, types.BigInteger)
        else 32
    )
    if getattr(sql_type, "unsigned", False):  # MySQL's INTEGER(unsigned=True)
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _integer_check(sql_type: types.Integer) -> Check:
    low, high = integer_bounds(sql_type)
    is_int = _expect(int, refuse=(bool,))

    def check(value: Any) -> str | None:
        why = is_int(value)
        if why is None and not low <= value <= high:
            why = f"{value} is out of range for the column ({low} to {high})"
        return why

    return check


def _numeric_check(sql_type: types.Numeric[Any]) -> Check:
    is_number = _expect(int, float, decimal.Decimal, refuse=(bool,))
    precision, scale = sql_type.precision, sql_type.scale
    if isinstance(sql_type, types.Float) or precision is None:
        return is_number  # Float's precision counts bits; no fixed bound to check
    limit = decimal.Decimal(10) ** (precision - (scale or 0))

    def check(value: Any) -> str | None:
        why = is_number(value)
        if why is None:
            number = decimal.Decimal(str(value)) if isinstance(value, float) else value
            # Rounded to the column's scale first, as the database stores it.
            if decimal.Decimal(number).is_finite() and abs(_rounded(number, scale or 0)) >= limit:
                why = f"{value} does not fit NUMERIC({precision}, {scale or 0})"
        return why

    return check


def _string_check(length: int | None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected str, got {type(value).__name__} {value!r:.60}"
        if length is not None and len(value) > length:
            return f"is {len(value)} characters long, the column holds at most {length}"
        return None

    return check


def _enum_check(sql_type: types.Enum) -> Check:
    allowed = set(sql_type.enums)
    enum_class = sql_type.enum_class

    def check(value: Any) -> str | None:
        if enum_class is not None and isinstance(value, enum_class):
            return None
        if isinstance(value, enum.Enum):
            value = value.name
        if isinstance(value, str) and value in allowed:
            return None
        return f"expected one of {sorted(allowed)}, got {value!r:.60}"

    return check


def _uuid_check(value: Any) -> str | None:
    if isinstance(value, uuid.UUID):
        return None
    if isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            return f"is not a valid UUID: {value!r:.60}"
        return None
    return f"expected UUID, got {type(value).__name__}"


def _rounded(number: Any, scale: int) -> Any:
    try:
        return round(number, scale)
    except decimal.InvalidOperation:
        # More digits than the decimal context holds (1e26 at scale 2): far beyond any
        # NUMERIC(p, s) limit anyway, so compare it unrounded.
        return number
