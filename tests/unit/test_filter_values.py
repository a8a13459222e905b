"""Filter values checked against their column's type and converted (pydantic, lax), no database."""

import datetime as dt
import enum
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    PickleType,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    Uuid,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from baserepo import InvalidFilterError
from baserepo._filter_values import column_filter
from baserepo._lookups import TEXT_LOOKUPS, build_filters, typed_filters
from baserepo._model import model_info


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Declares no python_type: checked as its impl, DateTime."""

    impl = DateTime
    cache_ok = True


class Opaque(TypeDecorator[Any]):
    """Declares python_type = object: its owner opts it out of checking."""

    impl = String
    cache_ok = True

    @property
    def python_type(self) -> type[Any]:
        return object


class Point(UserDefinedType[Any]):
    """SQLAlchemy 2.0's way of saying "unknown": python_type raises NotImplementedError."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "POINT"

    @property
    def python_type(self) -> type[Any]:
        raise NotImplementedError


class Base(DeclarativeBase):
    pass


class Kinds(Base):
    __tablename__ = "kinds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    small: Mapped[int] = mapped_column(SmallInteger)
    big: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    ratio: Mapped[float] = mapped_column(Float)
    flag: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    day: Mapped[dt.date] = mapped_column(Date)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    at_tz: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    clock: Mapped[dt.time] = mapped_column(Time)
    span: Mapped[dt.timedelta] = mapped_column(Interval)
    key: Mapped[uuid.UUID] = mapped_column(Uuid)
    key_text: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    color: Mapped[Color] = mapped_column(Enum(Color))
    size: Mapped[str] = mapped_column(Enum("S", "M", "L", name="size"))
    data: Mapped[Any] = mapped_column(JSON)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    utc_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    opaque: Mapped[Any] = mapped_column(Opaque)
    point: Mapped[Any] = mapped_column(Point)
    pickled: Mapped[Any] = mapped_column(PickleType)  # a TypeDecorator over LargeBinary
    bits: Mapped[Any] = mapped_column(postgresql.BIT(4))  # BitString: pydantic cannot build it


INFO = model_info(Kinds)
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))
UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def typed(key: str, value: Any) -> Any:
    return typed_filters(INFO, {key: value})[key]


# key, value given, value the query gets
CONVERTED: list[tuple[str, Any, Any]] = [
    ("id", "42", 42),
    ("id__gte", 42.0, 42),
    ("small__lt", "-32768", -32768),
    ("big", str(2**62), 2**62),
    ("price__gte", "1.5", Decimal("1.5")),
    ("price", 3, Decimal(3)),
    ("ratio__lt", "1.5", 1.5),
    ("ratio", Decimal("0.25"), 0.25),
    ("flag", "true", True),
    ("flag", 0, False),
    ("name", "Ada", "Ada"),
    ("name", Color.RED.value, "red"),
    ("day", "2024-01-02", dt.date(2024, 1, 2)),
    ("day__lt", dt.datetime(2024, 1, 2), dt.date(2024, 1, 2)),  # midnight only
    ("at", "2024-01-02T03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("at", "2024-01-02", dt.datetime(2024, 1, 2)),
    # The library's rule: aware -> UTC, made naive for a naive column.
    ("at__lt", "2024-01-02T03:00:00+02:00", dt.datetime(2024, 1, 2, 1, 0)),
    ("at__lt", dt.datetime(2024, 1, 2, 3, tzinfo=PLUS_TWO), dt.datetime(2024, 1, 2, 1, 0)),
    # ...and a naive value for an aware column is read as UTC.
    ("at_tz", "2024-01-02T03:00:00", dt.datetime(2024, 1, 2, 3, tzinfo=dt.UTC)),
    (
        "at_tz",
        dt.datetime(2024, 1, 2, 3, tzinfo=PLUS_TWO),
        dt.datetime(2024, 1, 2, 1, tzinfo=dt.UTC),
    ),
    ("utc_at", "2024-01-02T03:00:00+02:00", dt.datetime(2024, 1, 2, 1, 0)),  # through impl
    ("clock", "10:30", dt.time(10, 30)),
    ("span__gt", "P1DT2H", dt.timedelta(days=1, hours=2)),
    ("key", str(UUID), UUID),
    ("key", UUID.hex, UUID),
    ("key_text", UUID, str(UUID)),
    ("color", "red", Color.RED),  # by value
    ("color", "RED", "RED"),  # the stored name passes as it is
    ("color", Color.GREEN, Color.GREEN),
    ("size__in", ("S", "L"), ["S", "L"]),
    ("blob", b"\x00\x01", b"\x00\x01"),
    ("id__range", ["1", "9"], (1, 9)),
    ("id__in", {"7"}, [7]),
    ("id", None, None),  # IS NULL
    ("id__isnull", True, True),
]


@pytest.mark.parametrize(("key", "value", "expected"), CONVERTED)
def test_a_value_is_converted_to_its_column_type(key: str, value: Any, expected: Any) -> None:
    got = typed(key, value)
    assert got == expected
    assert type(got) is type(expected)


# Values that JSON, an opted-out TypeDecorator or an unknown type must receive untouched.
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("data", {"a": [1, 2]}),
        ("data", [1, "x"]),
        ("data", 5),
        ("opaque", object),
        ("point", (1, 2)),
        ("pickled", {"any": "object"}),
        ("bits", "1010"),
    ],
)
def test_columns_of_unknown_python_type_pass_values_unchecked(key: str, value: Any) -> None:
    assert typed(key, value) is value


# key, value, what the message says besides the key, the column and the value
REFUSED: list[tuple[str, Any, str]] = [
    ("id", "abc", "valid integer"),
    ("id", True, "True/False only for a boolean column"),
    ("ratio", False, "True/False only for a boolean column"),
    ("id__gt", 4.5, "fractional part"),
    ("small", 2**15, "less than or equal to 32767"),
    ("id", 2**31, "less than or equal to 2147483647"),
    ("price", "NaN", "finite number"),
    ("ratio__gt", float("inf"), "finite number"),
    ("flag", "maybe", "valid boolean"),
    ("flag", 2, "valid boolean"),
    ("name", 5, "valid string"),
    ("day", dt.datetime(2024, 1, 2, 3), "zero time"),
    ("day", 1_700_000_000, "not a number"),
    ("at", 1_700_000_000, "not a number"),
    ("at", "yesterday", "valid datetime"),
    ("clock", 3600, "not a number"),
    ("span", 60, "not a number"),
    ("key", "not-a-uuid", "valid UUID"),
    ("color", "BLUE", ""),
    ("size", "XL", "'S', 'M' or 'L'"),
    ("utc_at", "soon", "valid datetime"),
]


@pytest.mark.parametrize(("key", "value", "reason"), REFUSED)
def test_a_value_that_does_not_fit_names_key_column_type_and_value(
    key: str, value: Any, reason: str
) -> None:
    with pytest.raises(InvalidFilterError) as caught:
        typed(key, value)

    message = str(caught.value)
    field = key.split("__")[0]
    assert caught.value.key == key
    assert message.startswith(f"filter {key!r}: {value!r}")
    assert re.search(rf"kinds\.{field} \(\w+", message), message
    assert reason in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("id__in", [1, "x"], "item 1: 'x'"),
        ("id__not_in", [1, None], "__not_in cannot hold None"),
        ("id__range", (1, "x"), "high bound: 'x'"),
        ("at__range", ("soon", "2024-01-01"), "low bound: 'soon'"),
        ("id__range", (None, 5), "cannot compare with None"),
        ("id__isnull", "true", "expects True or False"),  # a flag, not a column value
        ("id__lt", None, "cannot compare with None"),
    ],
)
def test_lists_ranges_and_flags_are_checked_item_by_item(
    key: str, value: Any, fragment: str
) -> None:
    with pytest.raises(InvalidFilterError, match=re.escape(fragment)):
        build_filters(INFO, {key: value})


TEXT_COLUMNS = ["name", "body"]
NOT_TEXT = ["id", "price", "flag", "day", "at", "key", "key_text", "color", "size", "data", "blob"]


@pytest.mark.parametrize("lookup", sorted(TEXT_LOOKUPS))
def test_text_lookups_apply_to_text_columns_only(lookup: str) -> None:
    for field in TEXT_COLUMNS:
        assert typed(f"{field}__{lookup}", "a") == "a"
    for field in NOT_TEXT:
        with pytest.raises(InvalidFilterError, match=f"{lookup} applies to text columns"):
            typed(f"{field}__{lookup}", "a")
    with pytest.raises(InvalidFilterError, match="expects a string"):
        typed(f"name__{lookup}", 5)


def test_the_query_carries_the_converted_value() -> None:
    query = select(Kinds.id).where(
        build_filters(INFO, {"id__gte": "42", "price__lt": "9.5", "at__lt": "2024-01-02"})
    )
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "kinds.id >= 42" in sql
    assert "kinds.price < 9.5" in sql
    assert "kinds.at < '2024-01-02 00:00:00'" in sql


def test_each_column_builds_its_checker_once() -> None:
    column = INFO.columns["price"]
    assert column_filter(column) is column_filter(column)


# -- properties ------------------------------------------------------------------------


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_any_integer_in_range_passes_as_itself_and_as_text(number: int) -> None:
    assert typed("id", number) == typed("id", str(number)) == number


@given(st.integers().filter(lambda n: not -(2**31) <= n < 2**31))
def test_any_integer_out_of_range_is_refused(number: int) -> None:
    with pytest.raises(InvalidFilterError, match=r"kinds\.id"):
        typed("id", number)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4))
def test_any_finite_decimal_passes_as_text(number: Decimal) -> None:
    assert typed("price", str(number)) == number


AWARE = st.datetimes(
    min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.timezones()
).filter(
    # ISO 8601 offsets are whole minutes; old local mean times (+02:35:20) have no spelling.
    lambda moment: moment.utcoffset() is None or moment.utcoffset().seconds % 60 == 0  # type: ignore[union-attr]
)


@given(AWARE)
def test_an_aware_datetime_means_the_same_instant_in_every_spelling(moment: dt.datetime) -> None:
    utc_wall_time = moment.astimezone(dt.UTC).replace(tzinfo=None)
    # As a datetime or as its ISO 8601 string, for a naive column or an aware one.
    assert typed("at", moment) == typed("at", moment.isoformat()) == utc_wall_time
    # (Compared in UTC: Python never finds a DST-ambiguous wall time equal across zones.)
    in_utc = moment.astimezone(dt.UTC)
    assert typed("at_tz", moment) == typed("at_tz", moment.isoformat()) == in_utc
    assert typed("at_tz", utc_wall_time) == in_utc


# Valid values of several kinds, as a client may spell them.
VALID = st.one_of(
    st.tuples(st.just("id__gte"), st.integers(-1000, 1000).map(str)),
    st.tuples(st.just("price__lt"), st.decimals("-1e6", "1e6", places=2).map(str)),
    st.tuples(st.just("ratio"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("flag"), st.sampled_from(["yes", "no", "true", 0, 1, True])),
    st.tuples(st.just("at__lt"), AWARE.map(dt.datetime.isoformat)),
    st.tuples(st.just("at_tz__gt"), st.datetimes().map(dt.datetime.isoformat)),
    st.tuples(st.just("day__in"), st.lists(st.dates().map(dt.date.isoformat), max_size=3)),
    st.tuples(st.just("color"), st.sampled_from(["red", "GREEN", Color.RED])),
    st.tuples(st.just("key"), st.uuids().map(str)),
)


@given(st.lists(VALID, max_size=5).map(dict))
def test_converting_again_changes_nothing(filters: dict[str, Any]) -> None:
    # The repository converts once for the cache key and again when building the query.
    once = typed_filters(INFO, filters)
    assert typed_filters(INFO, once) == once
