"""The quick look at a batch of creates never accepts what for_create refuses, and gives
the same rows (and columns) for what both accept."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, Field, field_serializer

from baserepo._column_kinds import integer_bounds, kind_of
from baserepo._model import model_info
from baserepo._records import RecordPreparer
from baserepo.exceptions import RecordValidationError
from tests.kinds_models import Colour, Everything
from tests.models import Article, User, UserCreate


class Name(str):
    """A str subclass: for_create accepts it, the quick check leaves it to for_create."""


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1]),
    st.floats(allow_nan=False),
    st.text(max_size=120),
    st.builds(Name, st.text(max_size=5)),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=2)))),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.uuids().map(str),
    st.binary(max_size=5),
    st.sampled_from(Colour),
    st.sampled_from(["RED", "green"]),
)


def strictly(rows: Any) -> list[dict[str, tuple[type, str]]] | None:
    """Rows compared by type and repr too: == alone takes 12:00+02:00 for 10:00 UTC."""
    if rows is None:
        return None
    return [{k: (type(v), repr(v)) for k, v in row.items()} for row in rows]


def _batches(model: type[Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    keys = [*model_info(model).columns, "no_such_column"]
    record = st.dictionaries(st.sampled_from(keys), VALUES, max_size=len(keys))
    # Mostly batches of one shape (what the quick look accepts), sometimes mixed shapes.
    same_shape = st.builds(
        lambda shape, rows: [dict(zip(shape, row, strict=False)) for row in rows],
        st.lists(st.sampled_from(keys), unique=True, min_size=1, max_size=len(keys)),
        st.lists(st.lists(VALUES, min_size=len(keys), max_size=len(keys)), min_size=1, max_size=4),
    )
    return st.one_of(same_shape, st.lists(record, min_size=1, max_size=4))


def _outcome(preparer: RecordPreparer, record: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return preparer.for_create(record)
    except RecordValidationError:
        return None


@pytest.mark.parametrize("model", [User, Article, Everything])
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_quick_look_accepts_only_what_for_create_accepts(
    model: type[Any], data: st.DataObject
) -> None:
    # Anything at all (wrong types, subclasses, unknown keys, mixed shapes): almost always
    # left to for_create, and whatever is accepted must be what for_create builds.
    preparer = RecordPreparer(model_info(model))
    batch = data.draw(_batches(model))
    quick = preparer.quick_batch([dict(record) for record in batch])
    if quick is not None:
        assert strictly(quick) == strictly([_outcome(preparer, dict(r)) for r in batch])
        assert quick.columns == [[row[key] for row in quick] for key in quick.keys]


UTC_PLUS_TWO = timezone(timedelta(hours=2))
NAIVE = st.datetimes()
AWARE_UTC = st.datetimes(timezones=st.just(UTC))
AWARE_ELSEWHERE = st.datetimes(timezones=st.just(UTC_PLUS_TWO))
ANYTHING = st.one_of(st.integers(), st.text(max_size=3), st.binary(max_size=3))
NOT_A_NUMBER = st.one_of(st.text(max_size=3), st.booleans(), st.binary(max_size=3))


def _kind_values(column: Any) -> tuple[Any, Any, Any]:
    """(values for_create keeps as they are, values it refuses, values it accepts but
    changes or takes in another type: the quick look must leave these to it)."""
    sql_type = column.type
    name = kind_of(sql_type).name
    nothing = st.nothing()
    if name == "boolean":
        return st.booleans(), st.sampled_from([0, 1]), nothing
    if name == "string":
        length = sql_type.length
        if length is None:
            return st.text(max_size=30), st.integers(), nothing
        fitting = st.one_of(st.text(max_size=5), st.text(min_size=length, max_size=length))
        return fitting, st.text(min_size=length + 1, max_size=length + 1), nothing
    if name == "integer":
        low, high = integer_bounds(sql_type)
        fitting = st.one_of(st.integers(-5, 5), st.sampled_from([low, high]))
        return fitting, st.sampled_from([low - 1, high + 1, True]), nothing
    if name == "float":
        numbers = st.one_of(
            st.floats(), st.integers(-(10**300), 10**300), st.decimals(places=2, allow_nan=False)
        )
        no_float_holds = st.sampled_from([Decimal("sNaN"), 10**400, -(10**400)])
        return numbers, st.one_of(NOT_A_NUMBER, no_float_holds), nothing
    if name == "numeric":
        if sql_type.precision is None:
            return st.decimals(places=2), NOT_A_NUMBER, nothing
        fitting = st.decimals(min_value=-(10**7), max_value=10**7, places=2)
        return fitting, st.sampled_from([Decimal("1e8"), Decimal("-1e8"), "1"]), nothing
    if name == "datetime":
        if sql_type.timezone:
            return AWARE_UTC, st.dates(), st.one_of(NAIVE, AWARE_ELSEWHERE)
        return NAIVE, st.dates(), st.one_of(AWARE_UTC, AWARE_ELSEWHERE)
    if name == "date":
        return st.dates(), NAIVE, nothing
    if name == "time":
        return st.times(), st.text(max_size=3), nothing
    if name == "interval":
        return st.timedeltas(), st.integers(), nothing
    if name == "uuid":
        return st.uuids(), st.just("not a uuid"), st.uuids().map(str)
    if name == "binary":
        return st.binary(max_size=5), st.text(max_size=3), st.binary(max_size=3).map(bytearray)
    if name == "enum":
        return st.sampled_from(Colour), st.just("GREEN"), st.sampled_from(["RED", "BLUE"])
    if name in ("json", "pickle", "decorated"):
        return ANYTHING, nothing, nothing
    raise AssertionError(f"no strategy for {sql_type!r} ({name})")  # pragma: no cover


def _fitting_and_not(column: Any) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """(values for_create accepts as they are, values just out of the column's limits)."""
    fitting, refused, _ = _kind_values(column)
    missing = st.nothing() if column.nullable else st.none()  # None where NOT NULL
    if column.nullable:
        fitting = st.one_of(st.none(), fitting)
    return fitting, st.one_of(refused, missing)


@pytest.mark.parametrize("model", [User, Article, Everything])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_on_exactly_typed_batches_the_quick_look_decides_as_for_create(
    model: type[Any], data: st.DataObject
) -> None:
    # Batches of one shape with values of the columns' own types, every record fine or one
    # value just out of its column's limits: the quick look must accept exactly the fine
    # batches, and build the rows for_create builds.
    info = model_info(model)
    optional = [a for a in info.columns if a != info.pk_attr and a not in info.required]
    # Each optional column in about half of the shapes.
    shape = sorted(info.required) + [attr for attr in optional if data.draw(st.booleans())]
    strategies = {attr: _fitting_and_not(info.columns[attr]) for attr in shape}
    refusable = [attr for attr in shape if not strategies[attr][1].is_empty]
    record = st.fixed_dictionaries({attr: fitting for attr, (fitting, _) in strategies.items()})
    batch = data.draw(st.lists(record, min_size=1, max_size=4))
    spoiled = bool(refusable) and data.draw(st.booleans())
    if spoiled:
        victim = data.draw(st.sampled_from(batch))
        attr = data.draw(st.sampled_from(refusable))
        victim[attr] = data.draw(strategies[attr][1])
    preparer = RecordPreparer(info)
    expected = [_outcome(preparer, dict(r)) for r in batch]
    assert (None in expected) is spoiled  # the strategies do what they say
    quick = preparer.quick_batch([dict(r) for r in batch])
    if spoiled:
        assert quick is None
    else:
        assert quick is not None
        assert strictly(quick) == strictly(expected)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_values_for_create_changes_or_takes_in_another_type_are_left_to_it(
    data: st.DataObject,
) -> None:
    # Aware datetimes for a naive column (the UTC rule), UUIDs as text, enum names...:
    # for_create accepts them, and the quick look must not pass them on unchanged.
    info = model_info(Everything)
    changed = {a: _kind_values(c) for a, c in info.columns.items() if a != info.pk_attr}
    changed = {a: values for a, values in changed.items() if not values[2].is_empty}
    attr = data.draw(st.sampled_from(sorted(changed)))
    fitting, _, other = changed[attr]
    batch = [{attr: data.draw(fitting)}, {attr: data.draw(other)}]
    preparer = RecordPreparer(info)
    expected = [_outcome(preparer, dict(r)) for r in batch]
    assert None not in expected
    quick = preparer.quick_batch([dict(r) for r in batch])
    assert quick is None or strictly(quick) == strictly(expected)
    if kind_of(info.columns[attr].type).name == "datetime":
        assert quick is None


def test_a_well_formed_batch_passes_the_quick_look_as_for_create_builds_it() -> None:
    preparer = RecordPreparer(model_info(User))
    batch = [
        {
            "id": None,
            "name": f"Ada {i}",
            "email": f"ada{i}@example.com",
            "salary": 2**31 - 1 if i else None,
            "is_active": True,
            "last_login": datetime(2024, 1, 1),
        }
        for i in range(3)
    ]
    quick = preparer.quick_batch(batch)
    assert quick is not None
    assert list(quick) == [preparer.for_create(record) for record in batch]
    assert quick.keys == ("name", "email", "salary", "is_active", "last_login")
    assert quick.columns[2] == [None, 2**31 - 1, 2**31 - 1]
    assert all("id" in record for record in batch)  # the caller's dicts are left alone


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ({"name": "x" * 100}, {"name": "x" * 101}),  # String(100)
        ({"name": "A", "salary": 2**31 - 1}, {"name": "A", "salary": 2**31}),  # INTEGER range
        ({"name": "A", "salary": -(2**31)}, {"name": "A", "salary": -(2**31) - 1}),
        ({"name": "A", "is_active": False}, {"name": "A", "is_active": 0}),  # not a bool
        ({"name": "A", "salary": 1}, {"name": "A", "salary": True}),  # a bool is not an int
        ({"name": "A"}, {"name": None}),  # NOT NULL
        ({"name": "A"}, {"email": "a@b.c"}),  # name is required
        ({"name": "A", "role": "x"}, {"name": "A", "nickname": "x"}),  # no such column
        ({"name": "A"}, {"name": Name("A")}),  # a subclass: for_create decides
        (
            {"name": "A", "last_login": datetime(2024, 1, 1)},
            {"name": "A", "last_login": date(2024, 1, 1)},  # a date is not a datetime
        ),
    ],
)
def test_anything_unusual_in_a_batch_is_left_to_for_create(
    good: dict[str, Any], bad: dict[str, Any]
) -> None:
    preparer = RecordPreparer(model_info(User))
    assert preparer.quick_batch([good, good]) is not None
    assert preparer.quick_batch([good, bad]) is None


@pytest.mark.parametrize(
    "batch",
    [
        [{"name": "Ada"}, {"email": "b@example.com", "name": "Bob"}],  # key sets differ
        [{"name": "Ada"}, {"nick": "Bob"}],  # same length, other key
        [{"id": 1, "name": "Ada"}, {"id": None, "name": "Bob"}],  # some keys given
        [{"name": "Ada"}, UserCreate(name="Bob", email="b@example.com")],  # not a dict
        [],
    ],
)
def test_batches_of_mixed_shapes_are_left_to_for_create(batch: list[Any]) -> None:
    assert RecordPreparer(model_info(User)).quick_batch(batch) is None


def test_numeric_columns_use_the_columns_own_check() -> None:
    preparer = RecordPreparer(model_info(Article))
    assert preparer.quick_batch([{"title": "t", "score": Decimal("1.5")}]) is not None
    assert preparer.quick_batch([{"title": "t", "score": Decimal("1e9")}]) is None
    assert preparer.quick_batch([{"title": "t", "published": date(2024, 1, 1)}]) is None


USER_FIELDS = {
    "name": st.text(max_size=101),
    "email": st.one_of(st.none(), st.text(max_size=5)),
    "salary": st.one_of(st.none(), st.integers(-(2**31) - 1, 2**31), st.just("12")),
    "is_active": st.one_of(st.booleans(), st.just("yes")),
    "last_login": st.one_of(st.none(), NAIVE, AWARE_ELSEWHERE, st.just("2024-01-01T10:00")),
}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_with_a_pydantic_schema_the_quick_look_builds_what_for_create_builds(
    data: st.DataObject,
) -> None:
    # The whole batch through one TypeAdapter call, then the quick look: what it accepts
    # must be what for_create builds record by record (schema, None-dropping, column checks).
    keys = data.draw(st.sets(st.sampled_from(sorted(USER_FIELDS))))
    record = st.fixed_dictionaries({"name": USER_FIELDS["name"]}).flatmap(
        lambda base: st.fixed_dictionaries({k: USER_FIELDS[k] for k in keys}).map(
            lambda rest: {**base, **rest}
        )
    )
    batch = data.draw(st.lists(record, min_size=1, max_size=4))
    as_instances = data.draw(st.booleans())
    if as_instances:
        try:
            batch = [UserCreate(**r) for r in batch]
        except ValueError:
            return
    preparer = RecordPreparer(model_info(User), create_schema=UserCreate)
    quick = preparer.quick_batch(batch)
    if quick is not None:
        assert strictly(quick) == strictly([_outcome(preparer, r) for r in batch])


def test_with_a_pydantic_schema_a_usual_batch_takes_the_quick_look() -> None:
    preparer = RecordPreparer(model_info(User), create_schema=UserCreate)
    batch = [{"name": f"Ada {i}", "email": f"a{i}@example.com", "salary": "12"} for i in range(3)]
    quick = preparer.quick_batch(batch)
    assert quick is not None
    assert list(quick) == [preparer.for_create(r) for r in batch]
    assert quick[0]["salary"] == 12  # converted by the schema, as for_create does
    instances = [UserCreate(**r) for r in batch]
    assert preparer.quick_batch(instances) == list(quick)


class ShoutingCreate(UserCreate):
    """A schema whose dump differs from its fields: its serializer decides the rows."""

    @field_serializer("name")
    def shout(self, name: str) -> str:
        return name.upper()


class HiddenSalaryCreate(UserCreate):
    """A field the dump leaves out."""

    salary: int | None = Field(default=None, exclude=True)


class AliasedCreate(UserCreate):
    """Dumped by alias: under keys the model does not have."""

    model_config = ConfigDict(serialize_by_alias=True, populate_by_name=True)

    department: str | None = Field(default=None, alias="dept")


def test_a_field_the_dump_leaves_out_is_left_out() -> None:
    preparer = RecordPreparer(model_info(User), create_schema=HiddenSalaryCreate)
    batch = [{"name": "ada", "salary": 1, "department": "x"}] * 2
    quick = preparer.quick_batch(batch)
    assert quick is not None
    assert strictly(quick) == strictly([preparer.for_create(r) for r in batch])
    assert "salary" not in quick[0]


def test_a_schema_dumped_by_alias_is_left_to_for_create() -> None:
    # for_create refuses "dept" (no such column): so must the batch.
    preparer = RecordPreparer(model_info(User), create_schema=AliasedCreate)
    batch = [{"name": "ada", "department": "x"}] * 2
    assert _outcome(preparer, batch[0]) is None
    assert preparer.quick_batch(batch) is None


def test_a_schema_with_a_serializer_gives_its_dump() -> None:
    preparer = RecordPreparer(model_info(User), create_schema=ShoutingCreate)
    batch = [{"name": "ada", "salary": 1}, {"name": "bob", "salary": 2}]
    quick = preparer.quick_batch(batch)
    assert quick is not None
    assert [row["name"] for row in quick] == ["ADA", "BOB"]
    assert list(quick) == [preparer.for_create(r) for r in batch]


@pytest.mark.parametrize(
    "batch",
    [
        [{"name": "Ada", "salary": 2**31}],  # the schema's int has no column range
        [{"name": "A" * 101}],  # nor String(100)'s length
        [{"name": "Ada", "nickname": "x"}],  # a key the schema does not declare
        [{"name": "Ada", "is_active": "perhaps"}],  # refused by the schema
        [{"name": "Ada", "email": None}, {"name": "Bob"}],  # a None set in one, unset in other
    ],
)
def test_with_a_pydantic_schema_anything_unusual_is_left_to_for_create(
    batch: list[dict[str, Any]],
) -> None:
    preparer = RecordPreparer(model_info(User), create_schema=UserCreate)
    assert preparer.quick_batch(batch) is None
