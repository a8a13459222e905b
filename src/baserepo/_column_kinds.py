"""Every column type baserepo knows, once: what it accepts and how its values travel.

One ``ColumnKind`` per column, found by ``kind_of(column.type)`` in ``_TABLE`` (the first
class the type is an instance of wins, so subclasses come before their bases: ``Interval``
and ``PickleType`` are TypeDecorators, ``Enum`` is a ``String``, ``Float`` was a ``Numeric``
before SQLAlchemy 2.1). Four places read it and nothing else decides these facts:

* record validation (``_records``): ``check`` and ``convert``;
* the quick look at a batch (``_fast_records``): ``exact`` and ``fits``, which must accept only
  what ``check`` accepts and ``convert`` leaves as it is (a property test holds them to it);
* the cache codec (``cache/_codec``): ``encode`` / ``decode`` / ``cacheable`` / ``mutable``;
* PostgreSQL's COPY and ``unnest`` arrays (``_bulk/postgresql``): ``pg_bulk``. The array type
  name is not kept here: ``ARRAY(column.type)`` has SQLAlchemy compile it from the column's
  own type, lengths and precisions included.

A user's own TypeDecorator is a kind of its own, whatever its ``impl``: its
``process_bind_param`` decides which Python values it takes, so neither the impl's check nor
asyncpg's encoders (which see values before that method runs) may judge them.

Datetimes follow one rule on every database and path: a value is stored as its UTC instant.
An aware value for a naive ``DateTime`` is converted to UTC and its tzinfo dropped; a naive
value for ``DateTime(timezone=True)`` is taken as UTC; an aware one with another offset is
converted to UTC (SQLite and MariaDB would otherwise keep its wall time and lose the offset).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, methodcaller
from typing import TYPE_CHECKING, Any

from sqlalchemy import types
from sqlalchemy.sql import sqltypes

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Check", "ColumnKind", "integer_bounds", "kind_of"]

Check = Callable[[Any], str | None]
"""Returns why a non-None value does not fit the column, or None when it fits."""

_ZERO = dt.timedelta(0)
_UTC_OFFSET = methodcaller("utcoffset")
_TZINFO = attrgetter("tzinfo")


@dataclass(frozen=True, slots=True)
class ColumnKind:
    """What one column type accepts, and how its values are checked, cached and copied."""

    name: str
    check: Check | None = None
    """Why a non-None value does not fit; None: any value (the type itself decides)."""
    convert: Callable[[Any], Any] | None = None
    """The value to store for one ``check`` accepted (datetimes: the UTC rule)."""
    exact: frozenset[type] = frozenset()
    """Quick look: a column whose values all have exactly one of these types (or are None)..."""
    fits: Callable[[Sequence[Any]], bool] | None = None
    """...and pass this test (its non-None values, C-level loops) needs no ``check`` per value."""
    encode: Callable[[Any], Any] | None = None
    """Cache codec: a non-None value -> what orjson writes; None: orjson takes it as it is."""
    decode: Callable[[Any], Any] | None = None
    """Cache codec: what orjson read -> the value; None: as it is."""
    cacheable: bool = True
    """The codec restores its values exactly (same type and content)."""
    mutable: bool = False
    """Values can be changed in place (JSON, ARRAY): the cache serialises them at once."""
    pg_bulk: bool = False
    """asyncpg's COPY and ``unnest`` arrays carry its values as they are (no SQLAlchemy bind
    processing needed)."""


def kind_of(sql_type: types.TypeEngine[Any], dialect_name: str | None = None) -> ColumnKind:
    """The kind of a column type (its variant for ``dialect_name``, if one is declared)."""
    if dialect_name is not None:
        sql_type = sql_type._variant_mapping.get(dialect_name, sql_type)
    for sql_class, make in _TABLE:
        if isinstance(sql_type, sql_class):
            return make(sql_type)
    return _OPAQUE


def _expect(*accepted: type, refuse: tuple[type, ...] = ()) -> Check:
    names = " or ".join(t.__name__ for t in accepted)

    def check(value: Any) -> str | None:
        if isinstance(value, accepted) and not isinstance(value, refuse):
            return None
        return f"expected {names}, got {type(value).__name__} {value!r:.60}"

    return check


# --- the kinds, in the order of _TABLE --------------------------------------------------------

_OPAQUE = ColumnKind("opaque", cacheable=False)
"""A type baserepo does not know (UserDefinedType, INET, HSTORE...): the database decides."""


def _interval(sql_type: Any) -> ColumnKind:
    return ColumnKind(
        "interval",
        _expect(dt.timedelta),
        exact=frozenset({dt.timedelta}),
        encode=lambda v: [v.days, v.seconds, v.microseconds],
        decode=lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
        # Interval(native=False) is a timestamp column even on PostgreSQL.
        pg_bulk=getattr(sql_type, "native", True),
    )


def _pickled(_: Any) -> ColumnKind:
    return ColumnKind("pickle", cacheable=False, mutable=True)


def _decorated(sql_type: types.TypeDecorator[Any]) -> ColumnKind:
    # Cached only when it declares a JSON-native Python type: anything else could come back
    # from orjson as another type than its process_result_value made.
    try:
        python_type = sql_type.python_type
    except (NotImplementedError, AssertionError):
        python_type = None
    return ColumnKind("decorated", cacheable=python_type in (str, int, float, bool))


def _enum(sql_type: types.Enum) -> ColumnKind:
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

    if enum_class is None:
        return ColumnKind("enum", check)
    return ColumnKind("enum", check, encode=lambda v: v.name, decode=lambda v: enum_class[v])


def _json(_: Any) -> ColumnKind:
    return ColumnKind("json", mutable=True)


def _array(_: Any) -> ColumnKind:
    return ColumnKind("array", mutable=True)


def _boolean(_: Any) -> ColumnKind:
    return ColumnKind("boolean", _expect(bool), exact=frozenset({bool}), pg_bulk=True)


def _string(sql_type: types.String) -> ColumnKind:
    length = sql_type.length

    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"expected str, got {type(value).__name__} {value!r:.60}"
        if length is not None and len(value) > length:
            return f"is {len(value)} characters long, the column holds at most {length}"
        return None

    fits = None if length is None else (lambda values: max(map(len, values), default=0) <= length)
    return ColumnKind("string", check, exact=frozenset({str}), fits=fits, pg_bulk=True)


# Out-of-range numbers are refused here, not left to the database: MariaDB's INSERT IGNORE
# (ignore_conflicts) downgrades the error to a warning and silently stores the nearest value.
def integer_bounds(sql_type: types.Integer) -> tuple[int, int]:
    """The smallest and largest value the column holds."""
    visit_name = getattr(sql_type, "__visit_name__", "")
    if visit_name == "TINYINT":  # MySQL's own sizes, named so no dialect is imported
        bits = 8
    elif visit_name == "MEDIUMINT":
        bits = 24
    elif isinstance(sql_type, types.SmallInteger):
        bits = 16
    elif isinstance(sql_type, types.BigInteger):
        bits = 64
    else:
        bits = 32
    if getattr(sql_type, "unsigned", False):  # MySQL's INTEGER(unsigned=True)
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _integer(sql_type: types.Integer) -> ColumnKind:
    low, high = integer_bounds(sql_type)
    is_int = _expect(int, refuse=(bool,))

    def check(value: Any) -> str | None:
        why = is_int(value)
        if why is None and not low <= value <= high:
            why = f"{value} is out of range for the column ({low} to {high})"
        return why

    def fits(values: Sequence[Any]) -> bool:
        return not values or (low <= min(values) and max(values) <= high)

    return ColumnKind("integer", check, exact=frozenset({int}), fits=fits, pg_bulk=True)


_NUMBER = _expect(int, float, decimal.Decimal, refuse=(bool,))
_NUMBER_TYPES = frozenset({int, float, decimal.Decimal})


def _finite_or_text(value: float) -> float | str:
    # orjson writes inf and nan as null, so a cached row would turn them into None; carry
    # them as text ("inf", "nan"), which float() reads back.
    return value if math.isfinite(value) else repr(value)


def _number_kind(name: str, sql_type: Any, check: Check, exact: frozenset[type]) -> ColumnKind:
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    if sql_type.asdecimal:
        encode, decode = str, decimal.Decimal
    else:
        encode, decode = _finite_or_text, float
    return ColumnKind(name, check, exact=exact, encode=encode, decode=decode, pg_bulk=True)


def _float_check(value: Any) -> str | None:
    why = _NUMBER(value)
    if why is None:
        try:
            float(value)
        except (ValueError, OverflowError):
            # A signalling NaN, an int past 1e308: every driver's float encoder raises
            # (mid-batch, past the culprit search), so refuse it here, per record.
            return f"{value!r:.60} is not a floating-point number"
    return why


def _floatable(values: Sequence[Any]) -> bool:
    try:
        list(map(float, values))
    except (ValueError, OverflowError):
        return False
    return True


def _float(sql_type: types.Float[Any]) -> ColumnKind:
    # Its own row: on SQLAlchemy 2.1 Float is no longer a Numeric (both derive from
    # NumericCommon), and without it any value ("abc") passed. Its precision counts bits:
    # no decimal bound to check.
    kind = _number_kind("float", sql_type, _float_check, _NUMBER_TYPES)
    return dataclasses.replace(kind, fits=_floatable)


def _numeric(sql_type: types.Numeric[Any]) -> ColumnKind:
    precision, scale = sql_type.precision, sql_type.scale
    if precision is None:
        return _number_kind("numeric", sql_type, _NUMBER, _NUMBER_TYPES)
    limit = decimal.Decimal(10) ** (precision - (scale or 0))

    def check(value: Any) -> str | None:
        why = _NUMBER(value)
        if why is None:
            number = decimal.Decimal(str(value)) if isinstance(value, float) else value
            # Rounded to the column's scale first, as the database stores it.
            if decimal.Decimal(number).is_finite() and abs(_rounded(number, scale or 0)) >= limit:
                why = f"{value} does not fit NUMERIC({precision}, {scale or 0})"
        return why

    # No quick test: the limit needs each value rounded, so each goes through ``check``.
    return _number_kind("numeric", sql_type, check, frozenset())


def _rounded(number: Any, scale: int) -> Any:
    try:
        return round(number, scale)
    except decimal.InvalidOperation:
        # More digits than the decimal context holds (1e26 at scale 2): far beyond any
        # NUMERIC(p, s) limit anyway, so compare it unrounded.
        return number


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.utcoffset() is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _aware_utc(value: dt.datetime) -> dt.datetime:
    offset = value.utcoffset()
    if offset is None:
        return value.replace(tzinfo=dt.UTC)  # a naive value for an aware column is UTC
    return value.astimezone(dt.UTC) if offset else value


def _all_naive(values: Sequence[Any]) -> bool:
    # tzinfo, not utcoffset(): an attribute read is a third of a method call per value.
    return set(map(_TZINFO, values)) <= {None}


def _all_utc(values: Sequence[Any]) -> bool:
    return set(map(_UTC_OFFSET, values)) <= {_ZERO}


def _datetime(sql_type: types.DateTime) -> ColumnKind:
    aware = bool(sql_type.timezone)
    return ColumnKind(
        "datetime",
        _expect(dt.datetime),
        convert=_aware_utc if aware else _naive_utc,
        exact=frozenset({dt.datetime}),
        # Values the rule would change are left to check/convert, value by value.
        fits=_all_utc if aware else _all_naive,
        decode=dt.datetime.fromisoformat,
        pg_bulk=True,
    )


def _date(_: Any) -> ColumnKind:
    return ColumnKind(
        "date",
        _expect(dt.date, refuse=(dt.datetime,)),
        exact=frozenset({dt.date}),
        decode=dt.date.fromisoformat,
        pg_bulk=True,
    )


def _time(_: Any) -> ColumnKind:
    return ColumnKind(
        "time",
        _expect(dt.time),
        exact=frozenset({dt.time}),
        decode=dt.time.fromisoformat,
        pg_bulk=True,
    )


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


def _uuid(sql_type: types.Uuid[Any]) -> ColumnKind:
    exact = frozenset({uuid.UUID})
    # Uuid(native_uuid=False) is a CHAR(32) column, whose text SQLAlchemy's processor makes.
    native = sql_type.native_uuid
    if not sql_type.as_uuid:  # values stay text in the cache, as loaded
        return ColumnKind("uuid", _uuid_check, exact=exact, pg_bulk=native)
    return ColumnKind(
        "uuid", _uuid_check, exact=exact, encode=str, decode=uuid.UUID, pg_bulk=native
    )


def _binary(_: Any) -> ColumnKind:
    return ColumnKind(
        "binary",
        _expect(bytes, bytearray, memoryview),
        exact=frozenset({bytes}),
        encode=lambda v: base64.b64encode(v).decode(),
        decode=base64.b64decode,
        pg_bulk=True,
    )


_TABLE: tuple[tuple[type[Any], Callable[[Any], ColumnKind]], ...] = (
    # TypeDecorators of SQLAlchemy's own, before the rule for the user's decorators.
    # _AbstractInterval also covers postgresql.INTERVAL, which is not an Interval.
    (sqltypes._AbstractInterval, _interval),
    (types.PickleType, _pickled),
    (types.TypeDecorator, _decorated),
    (types.Enum, _enum),  # a String
    (types.JSON, _json),
    (types.ARRAY, _array),
    (types.Boolean, _boolean),
    (types.String, _string),
    (types.Integer, _integer),
    (types.Float, _float),  # a Numeric on SQLAlchemy 2.0
    (types.Numeric, _numeric),
    (types.DateTime, _datetime),
    (types.Date, _date),
    (types.Time, _time),
    (types.Uuid, _uuid),
    (types._Binary, _binary),
)
