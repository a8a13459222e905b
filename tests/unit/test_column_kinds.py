"""One table of column kinds: what each column type accepts, and the datetime rule."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import DateTime, Double, Float, types
from sqlalchemy.dialects import mysql, postgresql

from baserepo._column_kinds import integer_bounds, kind_of
from baserepo._model import model_info
from baserepo._records import RecordPreparer
from baserepo.exceptions import RecordValidationError
from tests.kinds_models import Everything, Moment, Sample

PLUS_TWO = timezone(timedelta(hours=2))


def preparer(model: type[Any]) -> RecordPreparer:
    return RecordPreparer(model_info(model))


@pytest.mark.parametrize("column", ["ratio", "double"])
@pytest.mark.parametrize("value", ["abc", b"1", True, [1.0]])
def test_a_float_column_refuses_what_is_not_a_number(column: str, value: Any) -> None:
    # On SQLAlchemy 2.1 Float is no longer a Numeric, and any value passed.
    with pytest.raises(RecordValidationError, match=column):
        preparer(Everything).for_create({column: value})


@pytest.mark.parametrize("value", [1.5, 2, float("inf")])
def test_a_float_column_takes_numbers(value: Any) -> None:
    assert preparer(Everything).for_create({"ratio": value}) == {"ratio": value}


@pytest.mark.parametrize("value", ["abc", 3600, datetime(2024, 1, 1)])
def test_an_interval_column_refuses_what_is_not_a_timedelta(value: Any) -> None:
    # Interval is a TypeDecorator in SQLAlchemy 2.x; it used to accept anything.
    with pytest.raises(RecordValidationError, match="span"):
        preparer(Everything).for_create({"span": value})


def test_float_is_its_own_kind_on_every_sqlalchemy() -> None:
    for sql_type in (Float(), Double(), types.REAL(), postgresql.DOUBLE_PRECISION()):
        kind = kind_of(sql_type)
        assert (kind.name, kind.check is not None, kind.pg_bulk) == ("float", True, True)


def test_every_column_has_the_kind_of_its_type() -> None:
    kinds = {attr: kind_of(c.type).name for attr, c in model_info(Everything).columns.items()}
    assert kinds == {
        "id": "integer",
        "flag": "boolean",
        "word": "string",
        "body": "string",
        "small": "integer",
        "big": "integer",
        "ratio": "float",
        "amount": "numeric",
        "at": "datetime",
        "at_tz": "datetime",
        "day": "date",
        "clock": "time",
        "span": "interval",
        "token": "uuid",
        "blob": "binary",
        "double": "float",
        "decimal": "numeric",
        "tiny": "integer",
        "colour": "enum",
        "doc": "json",
        "pickled": "pickle",
        "lowered": "decorated",
    }


def test_postgresqls_own_interval_is_an_interval() -> None:
    assert kind_of(postgresql.INTERVAL()).name == "interval"


def test_emulated_intervals_and_uuids_are_left_to_sqlalchemys_processors() -> None:
    # Stored as a timestamp and as CHAR(32) even on PostgreSQL: asyncpg can't encode them.
    assert kind_of(types.Interval()).pg_bulk
    assert not kind_of(types.Interval(native=False)).pg_bulk
    assert not kind_of(types.Uuid(native_uuid=False)).pg_bulk


def test_copy_and_arrays_carry_every_kind_asyncpg_encodes_itself() -> None:
    info = model_info(Everything)
    carried = {attr for attr, c in info.columns.items() if kind_of(c.type).pg_bulk}
    assert carried == set(model_info(Sample).columns) | {"double", "decimal", "tiny"}


def test_a_variant_is_judged_by_the_dialects_own_type() -> None:
    sql_type = types.String().with_variant(postgresql.JSONB(), "postgresql")
    assert kind_of(sql_type).name == "string"
    assert kind_of(sql_type, "postgresql").name == "json"


@pytest.mark.parametrize(
    ("sql_type", "bounds"),
    [
        (mysql.TINYINT(), (-128, 127)),
        (mysql.MEDIUMINT(unsigned=True), (0, 2**24 - 1)),
        (types.SmallInteger(), (-(2**15), 2**15 - 1)),
        (types.BigInteger(), (-(2**63), 2**63 - 1)),
    ],
)
def test_integer_bounds(sql_type: types.Integer, bounds: tuple[int, int]) -> None:
    assert integer_bounds(sql_type) == bounds


# -- the datetime rule -------------------------------------------------------------------------

NOON_PLUS_TWO = datetime(2024, 1, 1, 12, tzinfo=PLUS_TWO)  # 10:00 UTC


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        # An aware value for a naive column: its UTC instant, naive.
        ("at", NOON_PLUS_TWO, datetime(2024, 1, 1, 10)),
        ("at", datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2024, 1, 1, 10)),
        ("at", datetime(2024, 1, 1, 10), datetime(2024, 1, 1, 10)),
        # A naive value for an aware column is taken as UTC; other offsets become UTC.
        ("at_tz", datetime(2024, 1, 1, 12), datetime(2024, 1, 1, 12, tzinfo=UTC)),
        ("at_tz", NOON_PLUS_TWO, datetime(2024, 1, 1, 10, tzinfo=UTC)),
        ("at_tz", datetime(2024, 1, 1, 10, tzinfo=UTC), datetime(2024, 1, 1, 10, tzinfo=UTC)),
    ],
)
def test_datetimes_are_stored_as_their_utc_instant(
    column: str, value: datetime, stored: datetime
) -> None:
    for prepared in (
        preparer(Moment).for_create({column: value})[column],
        preparer(Moment).for_update({column: value})[column],
    ):
        assert prepared == stored
        assert prepared.tzinfo == stored.tzinfo  # == alone ignores the zone of aware values


def test_the_quick_look_leaves_values_the_rule_changes_to_for_create() -> None:
    quick = preparer(Moment).quick_batch
    assert quick([{"at": datetime(2024, 1, 1), "at_tz": datetime(2024, 1, 1, tzinfo=UTC)}])
    assert quick([{"at": NOON_PLUS_TWO}]) is None
    assert quick([{"at_tz": datetime(2024, 1, 1)}]) is None
    assert quick([{"at_tz": NOON_PLUS_TWO}]) is None


def test_a_user_decorator_decides_its_own_values() -> None:
    # Whatever its impl: process_bind_param turns 42 into "42" here.
    assert preparer(Everything).for_create({"lowered": 42}) == {"lowered": 42}
    # asyncpg would see the value before process_bind_param: SQLAlchemy must bind it.
    assert not kind_of(Everything.__table__.c.lowered.type).pg_bulk
    assert kind_of(DateTime(timezone=True)).pg_bulk
