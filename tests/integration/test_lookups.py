"""Every lookup against real rows on every database: one row per lookup, exact name sets.

The rows are chosen so that the classic mistakes return a different set:

* unescaped LIKE wildcards: ``test_`` would also match ``testing@``, ``0%@p`` would also match
  ``1000@p``, and ``A/B`` (``/`` is the escape character) would match ``ab``;
* case: every case-sensitive text lookup has a row differing only in case, every
  case-insensitive one a row in another case that it must find;
* NULLs: ``ne`` / ``not_in`` must keep rows whose value is NULL (Django's semantics);
* ``iendswith`` built as ``istartswith`` (advanced-alchemy's old bug) would return nothing.
"""

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import LOOKUPS, BaseRepository
from tests.models import User

# name, email, salary: names are unique, so a result is identified by its set of names.
ROWS: list[tuple[str, str | None, int | None]] = [
    ("Alice", "testing@x.org", 100),
    ("alice", "test_x@y.org", 200),
    ("ALICE", "TEST_Z@Y.ORG", None),
    ("Bob", "100%@pct.org", 300),
    ("bobby", "a/b@Slash.org", 400),
    ("Carol", None, 500),
    ("Dan", "ab@slash.org", 600),
    ("Eve", "1000@pct.org", 700),
    ("Fay", "50%@PCT.ORG", 800),
]
ALL = {name for name, _, _ in ROWS}
ALICES = {"Alice", "alice", "ALICE"}

# lookup -> (filter key, value, expected names, expected names on MySQL/MariaDB if different)
CASES: dict[str, tuple[str, Any, set[str], set[str] | None]] = {
    # `exact` is a plain `=`: on MariaDB it follows the column's collation (case-insensitive
    # by default), exactly as Django's `exact` does there. Only the LIKE family uses BINARY.
    "exact": ("name", "alice", {"alice"}, ALICES),
    "iexact": ("name__iexact", "aLiCe", ALICES, None),
    "ne": ("salary__ne", 100, ALL - {"Alice"}, None),  # keeps ALICE, whose salary is NULL
    "lt": ("salary__lt", 300, {"Alice", "alice"}, None),
    "lte": ("salary__lte", 300, {"Alice", "alice", "Bob"}, None),
    "gt": ("salary__gt", 600, {"Eve", "Fay"}, None),
    "gte": ("salary__gte", 600, {"Dan", "Eve", "Fay"}, None),
    "in": ("salary__in", [100, 300, 999], {"Alice", "Bob"}, None),
    "not_in": ("salary__not_in", [100, 300], ALL - {"Alice", "Bob"}, None),  # keeps NULL
    "range": ("salary__range", (200, 400), {"alice", "Bob", "bobby"}, None),  # inclusive
    "isnull": ("email__isnull", True, {"Carol"}, None),
    "isnotnull": ("salary__isnotnull", True, ALL - {"ALICE"}, None),
    # not testing@ (the `_` is literal), not TEST_Z@ (case)
    "startswith": ("email__startswith", "test_", {"alice"}, None),
    "istartswith": ("email__istartswith", "TEST_", {"alice", "ALICE"}, None),
    # not 1000@pct.org (the `%` is literal), not 50%@PCT.ORG (case)
    "endswith": ("email__endswith", "%@pct.org", {"Bob"}, None),
    # as a prefix this would match nothing
    "iendswith": ("email__iendswith", "%@PCT.org", {"Bob", "Fay"}, None),
    # not 1000@pct (the `%` is literal), not 50%@PCT (case)
    "contains": ("email__contains", "0%@p", {"Bob"}, None),
    # not ab@slash.org: the escape character itself is escaped
    "icontains": ("email__icontains", "A/B", {"bobby"}, None),
    # user patterns keep their wildcards; `_` is one character, case counts
    "like": ("name__like", "A_ice", {"Alice"}, None),
    "ilike": ("name__ilike", "a_ice", ALICES, None),
}


@pytest.fixture
async def seeded(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as writer, writer.begin():
        writer.add_all(User(name=n, email=e, salary=s) for n, e, s in ROWS)


def test_every_lookup_has_a_row() -> None:
    assert set(CASES) == set(LOOKUPS)


@pytest.mark.parametrize("lookup", list(CASES))
async def test_lookup(
    lookup: str, engine: AsyncEngine, session: AsyncSession, seeded: None
) -> None:
    key, value, expected, on_mysql = CASES[lookup]
    if on_mysql is not None and engine.dialect.name in {"mysql", "mariadb"}:
        expected = on_mysql
    repo = BaseRepository(User, session)

    found = {user.name for user in await repo.list(**{key: value})}

    assert found == expected
    assert await repo.count({key: value}) == len(expected)


async def test_exact_none_means_is_null_and_ne_none_means_is_not_null(
    session: AsyncSession, seeded: None
) -> None:
    repo = BaseRepository(User, session)
    assert {u.name for u in await repo.list(salary=None)} == {"ALICE"}
    assert {u.name for u in await repo.list(salary__ne=None)} == ALL - {"ALICE"}


async def test_lookups_combine_with_and(session: AsyncSession, seeded: None) -> None:
    repo = BaseRepository(User, session)
    found = await repo.list(name__istartswith="a", salary__isnotnull=True, salary__lt=200)
    assert [u.name for u in found] == ["Alice"]


async def test_a_repeated_lookup_binds_its_new_value(session: AsyncSession, seeded: None) -> None:
    # Compiled SQL is cached per statement shape (custom constructs included); each call must
    # still send its own value.
    repo = BaseRepository(User, session)
    for value, expected in [("A", {"Alice", "ALICE"}), ("a", {"alice"}), ("B", {"Bob"})]:
        assert {u.name for u in await repo.list(name__startswith=value)} == expected
