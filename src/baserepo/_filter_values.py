"""What a filter value must be for its column, checked and converted before any SQL is built.

Every column gets one :class:`ColumnFilter`, made on first use and kept: a pydantic
``TypeAdapter`` of the column's Python type in lax mode, so ``"42"`` passes for an INTEGER
column as ``42``, an ISO 8601 string for a DATE as a ``date``, ``"1.5"`` for a NUMERIC as
``Decimal("1.5")``. The database therefore only ever sees a value of the column's own type and
never coerces one by its own rules: MariaDB compares ``age >= 'abc'`` as ``age >= 0`` (a
``bulk_delete`` of every row), PostgreSQL refuses ``salary >= '42'`` with a driver error, SQLite
compares a text with a number as text. The same value is accepted or refused on all three.

Beyond pydantic's lax mode (docs/filters.md has the rules for users):

* ``True``/``False`` only for BOOLEAN columns (pydantic would read ``True`` as ``1``);
* dates, times, datetimes and intervals take their Python type or an ISO 8601 string, never a
  number (seconds or milliseconds since when?);
* no NaN or infinity, and integers within the column's range;
* datetimes follow the library's one rule: an aware value for a naive column is converted to
  UTC and made naive, a naive value for an aware (``timezone=True``) column is taken as UTC;
* a column whose Python type is unknown (JSON, ARRAY, PickleType, ``python_type`` raising
  ``NotImplementedError`` or ``object``, or a class pydantic cannot validate) takes any value
  unchecked: those types decide for themselves. A ``TypeDecorator`` that declares no
  ``python_type`` is checked as its ``impl``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from sqlalchemy import types

from ._column_kinds import integer_bounds
from .exceptions import InvalidFilterError

if TYPE_CHECKING:
    from sqlalchemy import Column
    from sqlalchemy.types import TypeEngine

__all__ = ["ColumnFilter", "column_filter"]

# Types that accept their own Python shapes (a JSON filter may be a dict, a list or a number).
_UNCHECKED = (types.JSON, types.ARRAY, types.PickleType, types.NullType)
_TEMPORAL = (dt.datetime, dt.date, dt.time, dt.timedelta)


@dataclass(frozen=True, slots=True)
class ColumnFilter:
    """Checks and converts the filter values of one column."""

    label: str
    """``users.salary (Integer)``: how error messages name the column and its type."""
    takes_text: bool
    """Text lookups (``contains``, ``iexact``...) apply: the column stores text (not an enum)."""
    adapter: Any
    """The pydantic ``TypeAdapter`` for the column's values; None: values pass unchecked."""

    def value(self, key: str, raw: Any, where: str = "") -> Any:
        """``raw`` as the column's Python type; raises InvalidFilterError naming the key, the
        value (``where`` it is, for an item of a list) and the column's type."""
        if self.adapter is None:
            return raw
        try:
            return self.adapter.validate_python(raw)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidFilterError(
                key, f"{where}{raw!r:.80} is not a valid value for {self.label}: {_reason(exc)}"
            ) from None


_BY_COLUMN: dict[Column[Any], ColumnFilter] = {}


def column_filter(column: Column[Any]) -> ColumnFilter:
    """The column's filter converter, built once (building a TypeAdapter costs ~100 us)."""
    known = _BY_COLUMN.get(column)
    if known is None:
        known = _BY_COLUMN[column] = _build(column)
    return known


def _build(column: Column[Any]) -> ColumnFilter:
    label = f"{column.table.name}.{column.name} ({repr(column.type).removesuffix('()')})"
    stored = _storage_type(column.type)
    takes_text = isinstance(stored, types.String) and not isinstance(stored, types.Enum)
    value_type = _value_type(column.type)
    if value_type is None:
        return ColumnFilter(label, takes_text, None)
    from pydantic import PydanticSchemaGenerationError, TypeAdapter

    try:
        adapter = TypeAdapter(value_type)
    except PydanticSchemaGenerationError:
        # A Python type pydantic knows nothing of (PostgreSQL's BitString): the type decides.
        adapter = None
    return ColumnFilter(label, takes_text, adapter)


def _value_type(sql_type: TypeEngine[Any]) -> Any:
    """The annotated Python type filter values must have; None: leave them unchecked."""
    from pydantic import AfterValidator, BeforeValidator, Field

    sql_type, python_type = _resolved(sql_type)
    if python_type is None:
        return None
    if isinstance(sql_type, types.Enum):
        return _enum_type(sql_type)
    if python_type is bool:
        return bool
    no_bool = BeforeValidator(_refuse_bool)
    if isinstance(sql_type, types.Uuid):
        as_text = () if sql_type.as_uuid else (AfterValidator(str),)
        return Annotated[uuid.UUID, no_bool, *as_text]
    if issubclass(python_type, _TEMPORAL):
        after = (AfterValidator(_utc_rule(sql_type)),) if python_type is dt.datetime else ()
        return Annotated[python_type, BeforeValidator(_refuse_number), *after]
    if python_type is int and isinstance(sql_type, types.Integer):
        low, high = integer_bounds(sql_type)
        return Annotated[int, no_bool, Field(ge=low, le=high)]
    if python_type in (float, decimal.Decimal):
        return Annotated[python_type, no_bool, Field(allow_inf_nan=False)]
    return Annotated[python_type, no_bool]


def _resolved(sql_type: TypeEngine[Any]) -> tuple[TypeEngine[Any], type[Any] | None]:
    """(the type that decides, its Python type): a TypeDecorator that declares no
    ``python_type`` of its own is looked through to its ``impl``."""
    while True:
        if isinstance(sql_type, _UNCHECKED):  # PickleType's impl is LargeBinary: stop here
            return sql_type, None
        python_type = _python_type(sql_type)
        if python_type is not None:
            return sql_type, python_type
        if not isinstance(sql_type, types.TypeDecorator) or _declares_python_type(sql_type):
            return sql_type, None
        sql_type = sql_type.impl_instance


def _python_type(sql_type: TypeEngine[Any]) -> type[Any] | None:
    try:
        python_type = sql_type.python_type
    except NotImplementedError:  # SQLAlchemy 2.0's answer for "unknown"
        return None
    return None if python_type is object else python_type  # 2.1's answer


def _declares_python_type(decorator: types.TypeDecorator[Any]) -> bool:
    # Declared by the user's class (or Interval) rather than inherited from TypeEngine: its
    # word stands, even `object` (the way to opt a decorator out of checking).
    for cls in type(decorator).__mro__:
        if cls is types.TypeDecorator:
            return False
        if "python_type" in vars(cls):
            return True
    return False


def _storage_type(sql_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """What the database stores: text lookups are about that, whatever the Python side is."""
    while isinstance(sql_type, types.TypeDecorator):
        sql_type = sql_type.impl_instance
    return sql_type


def _enum_type(sql_type: types.Enum) -> Any:
    # The stored strings themselves, or (with an enum class) a member or a member's value.
    stored: Any = Literal[tuple(sql_type.enums)] if sql_type.enums else str
    if sql_type.enum_class is None:
        return stored
    return Union[stored, sql_type.enum_class]  # noqa: UP007 (built at run time)


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("True/False only for a boolean column")
    return value


def _refuse_number(value: Any) -> Any:
    if isinstance(value, int | float | decimal.Decimal):
        raise ValueError("give a date/time value or an ISO 8601 string, not a number")
    return value


def _utc_rule(sql_type: TypeEngine[Any]) -> Any:
    aware_column = bool(getattr(sql_type, "timezone", False))

    def one_rule(value: dt.datetime) -> dt.datetime:
        if aware_column:
            return (
                value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            )
        if value.tzinfo is None:
            return value
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    return one_rule


def _reason(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return str(error)
    found = errors()
    message = str(found[0]["msg"]) if found else str(error)
    return message.removeprefix("Value error, ")
