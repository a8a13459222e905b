"""Lookups compiled to SQL for every dialect, and the errors bad filters raise. No database."""

import re
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.engine import Dialect

import baserepo
from baserepo import LOOKUPS, InvalidFilterError
from baserepo._lookups import build_filters
from baserepo._model import model_info
from tests.models import User

DIALECTS: dict[str, Dialect] = {
    "postgresql": postgresql.dialect(),
    "sqlite": sqlite.dialect(),
    "mysql": mysql.dialect(),
}

# lookup -> (filter key, value, a fragment every dialect must render)
SAMPLES: dict[str, tuple[str, Any, str]] = {
    "exact": ("name", "Ada", "users.name = 'Ada'"),
    "iexact": ("name__iexact", "Ada", "lower(users.name) = lower('Ada')"),
    "ne": ("salary__ne", 5, "users.salary != 5 OR users.salary IS NULL"),
    "lt": ("salary__lt", 5, "users.salary < 5"),
    "lte": ("salary__lte", 5, "users.salary <= 5"),
    "gt": ("salary__gt", 5, "users.salary > 5"),
    "gte": ("salary__gte", 5, "users.salary >= 5"),
    "in": ("salary__in", [1, 2], "users.salary IN (1, 2)"),
    "not_in": ("salary__not_in", [1, 2], "(users.salary NOT IN (1, 2)) OR users.salary IS NULL"),
    "range": ("salary__range", (1, 9), "users.salary BETWEEN 1 AND 9"),
    "isnull": ("email__isnull", True, "users.email IS NULL"),
    "isnotnull": ("email__isnotnull", True, "users.email IS NOT NULL"),
    "startswith": ("email__startswith", "ada", "ada"),
    "istartswith": ("email__istartswith", "ada", "ada"),
    "endswith": ("email__endswith", "ada", "ada"),
    "iendswith": ("email__iendswith", "ada", "ada"),
    "contains": ("email__contains", "ada", "ada"),
    "icontains": ("email__icontains", "ada", "ada"),
    "like": ("email__like", "ada", "ada"),
    "ilike": ("email__ilike", "ada", "ada"),
}

CASE_SENSITIVE_TEXT = {"startswith", "endswith", "contains", "like"}
CASE_INSENSITIVE_TEXT = {"iexact", "istartswith", "iendswith", "icontains", "ilike"}


def where_sql(filters: dict[str, Any], dialect: Dialect) -> str:
    """The WHERE clause for ``filters``, values inlined, ``%%`` unescaped for readability."""
    query = select(User.id).where(build_filters(model_info(User), filters))
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    return " ".join(sql.split("WHERE", 1)[1].split()).replace("%%", "%")


def test_every_lookup_has_a_sample() -> None:
    assert set(SAMPLES) == set(LOOKUPS)


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
@pytest.mark.parametrize("lookup", list(SAMPLES))
def test_lookup_compiles(lookup: str, dialect_name: str) -> None:
    key, value, fragment = SAMPLES[lookup]

    sql = where_sql({key: value}, DIALECTS[dialect_name])

    assert fragment in sql


@pytest.mark.parametrize("dialect_name", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize(
    ("lookup", "wildcard_before", "wildcard_after"),
    [
        ("startswith", False, True),
        ("istartswith", False, True),
        ("endswith", True, False),
        ("iendswith", True, False),
        ("contains", True, True),
        ("icontains", True, True),
    ],
)
def test_like_wildcards_in_values_are_escaped(
    lookup: str, wildcard_before: bool, wildcard_after: bool, dialect_name: str
) -> None:
    sql = where_sql({f"email__{lookup}": "test_"}, DIALECTS[dialect_name])

    if dialect_name == "sqlite" and lookup in CASE_SENSITIVE_TEXT:
        # GLOB, where "_" is not special; test_sqlite_case_sensitive_lookups_use_glob.
        star = ("*" if wildcard_before else "") + "test_" + ("*" if wildcard_after else "")
        assert sql == f"users.email GLOB '{star}'"
        return
    assert "'test/_'" in sql
    assert "ESCAPE '/'" in sql
    value_at = sql.index("'test/_'")
    # The pattern's own wildcards are separate literals, on the right side of the value.
    assert ("'%'" in sql[:value_at]) == wildcard_before, sql
    assert ("'%'" in sql[value_at:]) == wildcard_after, sql


def test_slash_the_escape_character_is_itself_escaped() -> None:
    assert "'a//b'" in where_sql({"email__icontains": "a/b"}, DIALECTS["postgresql"])


@pytest.mark.parametrize(
    ("key", "value", "glob"),
    [
        ("email__startswith", "a*b?c[d_%", "'a[*]b[?]c[[]d_%*'"),
        ("email__endswith", "x*", "'*x[*]'"),
        ("email__contains", "?", "'*[?]*'"),
        # A user LIKE pattern keeps its wildcards, translated; GLOB's own are made literal.
        ("email__like", "a%b_c*", "'a*b?c[*]'"),
    ],
)
def test_sqlite_case_sensitive_lookups_use_glob(key: str, value: str, glob: str) -> None:
    sql = where_sql({key: value}, DIALECTS["sqlite"])
    assert sql == f"users.email GLOB {glob}"


@pytest.mark.parametrize("lookup", sorted(CASE_SENSITIVE_TEXT | CASE_INSENSITIVE_TEXT | {"exact"}))
def test_mysql_binary_only_on_case_sensitive_text_lookups(lookup: str) -> None:
    key, value, _ = SAMPLES[lookup]

    sql = where_sql({key: value}, DIALECTS["mysql"])

    field = key.split("__")[0]
    assert (f"BINARY users.{field}" in sql) == (lookup in CASE_SENSITIVE_TEXT), sql


@pytest.mark.parametrize("lookup", sorted(CASE_SENSITIVE_TEXT))
def test_mariadb_dialect_renders_binary_too(lookup: str) -> None:
    # A "mariadb+asyncmy://" URL gives a dialect named "mariadb", not "mysql".
    key, value, _ = SAMPLES[lookup]
    assert where_sql({key: value}, MariaDBDialect()) == where_sql({key: value}, DIALECTS["mysql"])


@pytest.mark.parametrize("lookup", sorted(CASE_SENSITIVE_TEXT | CASE_INSENSITIVE_TEXT))
def test_postgresql_has_no_binary_or_glob(lookup: str) -> None:
    key, value, _ = SAMPLES[lookup]
    sql = where_sql({key: value}, DIALECTS["postgresql"])
    assert "BINARY" not in sql
    assert "GLOB" not in sql
    assert ("ILIKE" in sql) == (lookup in CASE_INSENSITIVE_TEXT - {"iexact"})


def test_no_lookup_means_exact_and_none_means_is_null() -> None:
    assert where_sql({"email": None}, DIALECTS["postgresql"]) == "users.email IS NULL"
    assert where_sql({"email__ne": None}, DIALECTS["postgresql"]) == "users.email IS NOT NULL"


def test_isnull_false_and_isnotnull_false_invert() -> None:
    assert where_sql({"email__isnull": False}, DIALECTS["sqlite"]) == "users.email IS NOT NULL"
    assert where_sql({"email__isnotnull": False}, DIALECTS["sqlite"]) == "users.email IS NULL"


def test_several_filters_are_anded() -> None:
    sql = where_sql({"salary__gt": 1, "name": "Ada"}, DIALECTS["postgresql"])
    assert sql == "users.salary > 1 AND users.name = 'Ada'"


# -- errors ------------------------------------------------------------------------------


def build(filters: dict[str, Any]) -> None:
    build_filters(model_info(User), filters)


@pytest.mark.parametrize("key", ["nope", "nope__startswith", "nope__bogus"])
def test_unknown_field_names_the_key_and_lists_fields(key: str) -> None:
    with pytest.raises(InvalidFilterError) as caught:
        build({key: "x"})

    error = caught.value
    assert error.key == key
    assert repr(key) in str(error)
    assert "User has no field 'nope" in str(error)
    assert {"name", "email", "salary", "deleted_at"} <= set(error.valid)
    assert set(error.valid).isdisjoint(LOOKUPS)
    assert "valid: " in str(error)
    assert "email" in str(error)


def test_unknown_lookup_lists_lookups() -> None:
    with pytest.raises(InvalidFilterError) as caught:
        build({"name__startwith": "A"})

    error = caught.value
    assert error.key == "name__startwith"
    assert "unknown lookup 'startwith'" in str(error)
    assert set(error.valid) == set(LOOKUPS)
    assert "startswith" in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("salary__in", 5),
        ("name__in", "abc"),  # a str is iterable, but surely not meant as ["a", "b", "c"]
        ("name__not_in", "abc"),
        ("name__in", {"a": 1}),
        ("salary__range", (1,)),
        ("salary__range", (1, 2, 3)),
        ("salary__range", 5),
        ("salary__range", (None, 5)),
        ("email__isnull", "yes"),
        ("email__isnull", 1),
        ("email__isnotnull", None),
        ("salary__lt", None),
        ("name__startswith", 5),
        ("name__iexact", None),
    ],
)
def test_value_of_wrong_shape_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(InvalidFilterError, match=re.escape(repr(key))) as caught:
        build({key: value})
    assert caught.value.key == key


def test_invalid_filter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nope"):
        build({"nope": 1})


# -- the public namespace ------------------------------------------------------------------


def _isort_order(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 calls "isort-style": CONSTANTS, then Classes, then the rest.
    if name.isupper():
        group = 0
    elif name[0].isupper():
        group = 1
    else:
        group = 2
    return group, name


def test_all_is_sorted_and_unique() -> None:
    assert baserepo.__all__ == sorted(baserepo.__all__, key=_isort_order)
    assert len(set(baserepo.__all__)) == len(baserepo.__all__)


def test_every_name_in_all_is_importable() -> None:
    namespace: dict[str, Any] = {}
    exec("from baserepo import *", namespace)  # the star import must not raise either
    for name in baserepo.__all__:
        assert getattr(baserepo, name) is not None
        assert name in namespace


def test_every_public_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(baserepo).items()
        if not name.startswith("_") and type(value).__name__ != "module"
    }
    assert public <= set(baserepo.__all__)


def test_the_lookup_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        LOOKUPS["startswith_x"] = LOOKUPS["startswith"]  # type: ignore[index]
