"""BaseRepository's single-row API on every database: create, reads, update, delete, restore.

Whenever the caller has not begun a transaction, each write must be committed when it returns:
`stored()` reads the row back through a brand-new session to prove it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baserepo import (
    BaseRepository,
    ConfigurationError,
    IntegrityConflictError,
    InvalidFilterError,
    RecordValidationError,
)
from tests.models import Article, User, UserCreate, UserUpdate, utcnow

Factory = async_sessionmaker[AsyncSession]
RepoMaker = Callable[[AsyncSession], BaseRepository[User, Any, Any]]

REPO_FORMS: dict[str, RepoMaker] = {
    "plain": lambda session: BaseRepository(User, session),
    "subscripted": lambda session: BaseRepository[User, UserCreate, UserUpdate](User, session),
}

# name, department, salary: names sort the same way under every collation.
PEOPLE = [
    ("Ada", "eng", 300),
    ("Bob", "eng", 100),
    ("Cy", "ops", 200),
    ("Dee", "ops", None),
    ("Eve", None, 500),
]


@dataclass
class NewUser:
    name: str
    email: str | None = None
    department: str | None = None


@pytest.fixture(params=list(REPO_FORMS))
def repo_form(request: pytest.FixtureRequest) -> RepoMaker:
    return REPO_FORMS[request.param]


@pytest.fixture
def repo(session: AsyncSession) -> BaseRepository[User, UserCreate, UserUpdate]:
    return BaseRepository[User, UserCreate, UserUpdate](User, session)


@pytest.fixture
async def people(session_factory: Factory) -> dict[str, int]:
    """PEOPLE committed through another session; name -> id."""
    async with session_factory() as writer, writer.begin():
        users = [
            User(name=n, email=f"{n.lower()}@x.org", department=d, salary=s) for n, d, s in PEOPLE
        ]
        writer.add_all(users)
    return {user.name: user.id for user in users}


async def stored(session_factory: Factory, model: type[Any], id: int) -> Any:
    """The committed row as another connection sees it, or None."""
    async with session_factory() as reader:
        return await reader.get(model, id)


def names(users: list[User]) -> list[str]:
    return [user.name for user in users]


# -- construction ----------------------------------------------------------------------------


async def test_both_forms_create_and_read(
    repo_form: RepoMaker, session: AsyncSession, session_factory: Factory
) -> None:
    repo = repo_form(session)

    user = await repo.create({"name": "Ada", "email": "ada@x.org"})

    assert isinstance(user, User)
    assert await repo.get(user.id) is user
    assert (await stored(session_factory, User, user.id)).email == "ada@x.org"


async def test_subscripted_form_validates_through_the_create_schema(session: AsyncSession) -> None:
    # UserCreate forbids extra keys; the plain form knows only the model's columns.
    subscripted = REPO_FORMS["subscripted"](session)
    with pytest.raises(RecordValidationError) as caught:
        await subscripted.create({"name": "Ada", "deleted_at": utcnow()})
    assert set(caught.value.problems) == {"deleted_at"}

    plain = REPO_FORMS["plain"](session)
    assert (await plain.create({"name": "Ada", "deleted_at": utcnow()})).deleted_at is not None


# -- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"name": "Ada", "email": "ada@x.org", "department": "eng"},
        UserCreate(name="Ada", email="ada@x.org", department="eng"),
        NewUser(name="Ada", email="ada@x.org", department="eng"),
    ],
    ids=["mapping", "pydantic", "dataclass"],
)
async def test_create_returns_the_stored_row(
    data: Any, repo_form: RepoMaker, session: AsyncSession, session_factory: Factory
) -> None:
    before = utcnow()

    user = await repo_form(session).create(data)

    assert isinstance(user.id, int)
    assert (user.name, user.email, user.department) == ("Ada", "ada@x.org", "eng")
    # Columns the input left out got their defaults.
    assert (user.is_active, user.bonus_eligible) == (True, False)
    assert before <= user.created_at <= utcnow()
    row = await stored(session_factory, User, user.id)
    assert (row.name, row.email, row.department, row.is_active) == ("Ada", "ada@x.org", "eng", True)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "Ada", "nope": 1}, "nope"),
        ({"name": 123}, "name"),
        ({"name": "Ada", "salary": "lots"}, "salary"),
        ({"name": "Ada", "is_active": "maybe"}, "is_active"),
        ({"email": "ada@x.org"}, "name"),
        ({"name": "A" * 101}, "name"),
        ({"name": "Ada", "department": "d" * 51}, "department"),
        ({"name": None}, "name"),
    ],
    ids=[
        "unknown-column",
        "str-given-int",
        "int-given-str",
        "bool-given-str",
        "missing-required",
        "name-too-long",
        "department-too-long",
        "none-for-not-null",
    ],
)
async def test_create_refuses_bad_records_naming_the_field(
    data: dict[str, Any],
    field: str,
    repo_form: RepoMaker,
    session: AsyncSession,
    session_factory: Factory,
) -> None:
    repo = repo_form(session)

    with pytest.raises(RecordValidationError) as caught:
        await repo.create(data)

    assert field in caught.value.problems, caught.value.problems
    assert repr(field) in str(caught.value)
    assert isinstance(caught.value, ValueError)
    async with session_factory() as reader:
        assert await reader.scalar(select(func.count()).select_from(User)) == 0


async def test_create_duplicate_email_is_an_integrity_conflict(
    repo: BaseRepository[User, UserCreate, UserUpdate], session_factory: Factory
) -> None:
    first = await repo.create({"name": "Ada", "email": "ada@x.org"})

    with pytest.raises(IntegrityConflictError) as caught:
        await repo.create({"name": "Imposter", "email": "ada@x.org"})

    assert caught.value.is_unique_violation
    assert caught.value.__cause__ is not None
    # The failed write was rolled back and the repository (and its session) still works.
    second = await repo.create({"name": "Bob", "email": "bob@x.org"})
    assert await repo.count() == 2
    assert names(await repo.list()) == ["Ada", "Bob"]
    assert (await stored(session_factory, User, second.id)).name == "Bob"
    assert (await stored(session_factory, User, first.id)).name == "Ada"


async def test_create_after_a_read_commits_too(
    repo: BaseRepository[User, UserCreate, UserUpdate], session_factory: Factory
) -> None:
    assert await repo.list() == []  # autobegins a transaction on the session

    user = await repo.create({"name": "Ada"})

    assert (await stored(session_factory, User, user.id)).name == "Ada"


async def test_writes_in_the_callers_transaction_end_with_it(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session: AsyncSession,
    session_factory: Factory,
) -> None:
    class Abort(Exception):
        pass

    async def unit_of_work() -> None:
        async with session.begin():
            user = await repo.create({"name": "Ada"})
            assert await stored(session_factory, User, user.id) is None  # not committed yet
            raise Abort

    with pytest.raises(Abort):
        await unit_of_work()
    async with session_factory() as reader:
        assert await reader.scalar(select(func.count()).select_from(User)) == 0


async def test_returned_instances_are_loaded_with_expire_on_commit(
    engine: AsyncEngine, tables: None
) -> None:
    # The default AsyncSession expires everything on commit; touching an expired attribute
    # outside the greenlet would raise MissingGreenlet.
    async with AsyncSession(engine) as session:
        repo = BaseRepository(User, session)
        created = await repo.create({"name": "Ada"})
        assert (created.name, created.is_active) == ("Ada", True)
        updated = await repo.update(created.id, {"salary": 7})
        assert updated is not None
        assert (updated.name, updated.salary) == ("Ada", 7)
        assert updated.updated_at is not None


# -- reads -----------------------------------------------------------------------------------


async def test_get(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    user = await repo.get(people["Cy"])
    assert user is not None
    assert (user.name, user.department, user.salary) == ("Cy", "ops", 200)
    assert await repo.get(max(people.values()) + 1) is None


async def test_get_many_keeps_the_order_of_ids_and_leaves_out_missing(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    missing = max(people.values()) + 1
    ids = [people["Eve"], missing, people["Ada"], people["Cy"]]

    assert names(await repo.get_many(ids)) == ["Eve", "Ada", "Cy"]
    assert names(await repo.get_many(iter([people["Bob"], people["Ada"]]))) == ["Bob", "Ada"]
    assert await repo.get_many([]) == []
    assert await repo.get_many([missing]) == []


async def test_list_without_arguments_is_every_row_by_primary_key(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    users = await repo.list()
    assert [u.id for u in users] == sorted(people.values())
    assert names(users) == ["Ada", "Bob", "Cy", "Dee", "Eve"]


# Sorting on columns with NULLs is left out: where NULLs go differs by database.
NO_NULLS = {"salary__isnotnull": True, "department__isnotnull": True}


@pytest.mark.parametrize(
    ("order_by", "filters", "expected"),
    [
        ("name", {}, ["Ada", "Bob", "Cy", "Dee", "Eve"]),
        ("-name", {}, ["Eve", "Dee", "Cy", "Bob", "Ada"]),
        ("+salary", NO_NULLS, ["Bob", "Cy", "Ada"]),
        ("-salary", NO_NULLS, ["Ada", "Cy", "Bob"]),
        (["department", "-salary"], NO_NULLS, ["Ada", "Bob", "Cy"]),
        (["-department", "name"], NO_NULLS, ["Cy", "Ada", "Bob"]),
        (("department", "-id"), {"department__isnotnull": True}, ["Bob", "Ada", "Dee", "Cy"]),
        # Ties on department fall back to the primary key.
        ("department", {"department__isnotnull": True}, ["Ada", "Bob", "Cy", "Dee"]),
    ],
)
async def test_list_order_by(
    order_by: Any,
    filters: dict[str, Any],
    expected: list[str],
    repo: BaseRepository[User, UserCreate, UserUpdate],
    people: dict[str, int],
) -> None:
    assert names(await repo.list(filters, order_by=order_by)) == expected


async def test_list_order_by_an_expression(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    found = await repo.list(order_by=[User.department.desc(), "-name"], department__isnotnull=True)
    assert names(found) == ["Dee", "Cy", "Bob", "Ada"]


async def test_list_limit_and_offset_page_in_a_stable_order(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    assert names(await repo.list(limit=2)) == ["Ada", "Bob"]
    assert names(await repo.list(limit=2, offset=2)) == ["Cy", "Dee"]
    assert names(await repo.list(limit=2, offset=4)) == ["Eve"]
    # Ties on department are broken by the primary key, so pages never overlap.
    pages = [
        names(await repo.list(order_by="department", department__ne=None, limit=1, offset=i))
        for i in range(4)
    ]
    assert pages == [["Ada"], ["Bob"], ["Cy"], ["Dee"]]
    assert names(await repo.list(order_by="-name", limit=1, offset=1)) == ["Dee"]


@pytest.mark.parametrize("order_by", ["nope", "-nope", ["name", "nope"]])
async def test_list_order_by_unknown_field(
    order_by: Any, repo: BaseRepository[User, UserCreate, UserUpdate]
) -> None:
    with pytest.raises(InvalidFilterError, match="nope") as caught:
        await repo.list(order_by=order_by)
    assert "name" in caught.value.valid


async def test_filters_as_a_mapping_as_keywords_and_both(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    assert names(await repo.list({"department": "eng"})) == ["Ada", "Bob"]
    assert names(await repo.list(department="eng")) == ["Ada", "Bob"]
    assert names(await repo.list({"department": "eng"}, salary__gt=200)) == ["Ada"]
    assert await repo.count({"department": "ops"}) == 2
    assert await repo.count({"department": "ops"}, salary__isnull=True) == 1
    assert await repo.count(department="ops", salary__gte=200) == 1
    assert await repo.exists({"name": "Eve"})
    assert await repo.exists(name="Eve", salary=500)
    assert not await repo.exists({"name": "Eve"}, salary__lt=500)


async def test_count_and_exists(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    assert await repo.count() == 5
    assert await repo.count(salary__gte=200) == 3
    assert await repo.count(name="Nobody") == 0
    assert await repo.exists()
    assert not await repo.exists(name="Nobody")


async def test_bad_filters_raise_before_any_query(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int], count_queries: Any
) -> None:
    with count_queries() as log:
        with pytest.raises(InvalidFilterError, match="nope"):
            await repo.list(nope=1)
        with pytest.raises(InvalidFilterError, match="startwith"):
            await repo.count(name__startwith="A")
        with pytest.raises(InvalidFilterError, match="salary__in"):
            await repo.exists(salary__in=5)
        with pytest.raises(TypeError):
            await repo.list([("name", "Ada")])  # type: ignore[arg-type]
    assert log.statements == []


async def test_empty_reads_on_an_empty_table(
    repo: BaseRepository[User, UserCreate, UserUpdate],
) -> None:
    assert await repo.list() == []
    assert await repo.count() == 0
    assert not await repo.exists()
    assert await repo.get(1) is None


# -- update ----------------------------------------------------------------------------------


async def test_update_with_a_mapping(
    repo_form: RepoMaker, session: AsyncSession, session_factory: Factory, people: dict[str, int]
) -> None:
    before = utcnow()

    user = await repo_form(session).update(people["Bob"], {"salary": 150, "department": "ops"})

    assert user is not None
    assert (user.name, user.salary, user.department) == ("Bob", 150, "ops")
    row = await stored(session_factory, User, people["Bob"])
    assert (row.name, row.email, row.salary, row.department) == ("Bob", "bob@x.org", 150, "ops")
    assert row.updated_at is not None
    assert before <= row.updated_at <= utcnow()
    assert (await stored(session_factory, User, people["Ada"])).updated_at is None


async def test_update_with_a_schema_changes_only_the_fields_set(
    repo_form: RepoMaker, session: AsyncSession, session_factory: Factory, people: dict[str, int]
) -> None:
    repo = repo_form(session)

    await repo.update(people["Ada"], UserUpdate(salary=999))

    row = await stored(session_factory, User, people["Ada"])
    assert (row.name, row.email, row.department, row.salary) == ("Ada", "ada@x.org", "eng", 999)

    # A field set to None explicitly is written as NULL.
    await repo.update(people["Ada"], UserUpdate(department=None))

    row = await stored(session_factory, User, people["Ada"])
    assert (row.name, row.department, row.salary) == ("Ada", None, 999)


async def test_update_to_a_duplicate_email_is_an_integrity_conflict(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    with pytest.raises(IntegrityConflictError) as caught:
        await repo.update(people["Bob"], {"email": "ada@x.org", "salary": 1})
    assert caught.value.is_unique_violation
    row = await stored(session_factory, User, people["Bob"])
    assert (row.email, row.salary) == ("bob@x.org", 100)
    # The session is usable again and holds no half-applied change.
    updated = await repo.update(people["Bob"], {"salary": 2})
    assert updated is not None
    assert (updated.email, updated.salary) == ("bob@x.org", 2)


async def test_update_missing_or_deleted_row_returns_none(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    assert await repo.update(max(people.values()) + 1, {"salary": 1}) is None
    await repo.delete(people["Cy"])
    assert await repo.update(people["Cy"], {"salary": 1}) is None
    assert (await stored(session_factory, User, people["Cy"])).salary == 200


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"nope": 1}, "nope"),
        ({"salary": "x"}, "salary"),
        ({"name": None}, "name"),
        ({"id": 9}, "id"),
    ],
)
async def test_update_refuses_bad_changes_naming_the_field(
    data: dict[str, Any],
    field: str,
    repo_form: RepoMaker,
    session: AsyncSession,
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    with pytest.raises(RecordValidationError) as caught:
        await repo_form(session).update(people["Ada"], data)
    assert field in caught.value.problems
    row = await stored(session_factory, User, people["Ada"])
    assert (row.name, row.salary, row.updated_at) == ("Ada", 300, None)


# -- delete and restore ----------------------------------------------------------------------


async def test_delete_is_soft_by_default_on_a_model_with_deleted_at(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    cy = people["Cy"]
    before = utcnow()

    assert await repo.delete(cy) is True

    # Hidden from every read...
    assert await repo.get(cy) is None
    assert await repo.get_many([cy, people["Ada"]]) == [await repo.get(people["Ada"])]
    assert "Cy" not in names(await repo.list())
    assert await repo.list(name="Cy") == []
    assert await repo.count() == 4
    assert await repo.count(department="ops") == 1
    assert not await repo.exists(name="Cy")
    # ...unless asked for.
    deleted = await repo.get(cy, include_deleted=True)
    assert deleted is not None
    assert deleted.deleted_at is not None
    assert before <= deleted.deleted_at <= utcnow()
    assert names(await repo.get_many([cy], include_deleted=True)) == ["Cy"]
    assert "Cy" in names(await repo.list(include_deleted=True))
    assert await repo.count(include_deleted=True) == 5
    assert await repo.exists(name="Cy", include_deleted=True)
    # The row is still there, stamped, for everyone.
    row = await stored(session_factory, User, cy)
    assert row is not None
    assert row.deleted_at == deleted.deleted_at
    # Deleting it again changes nothing.
    assert await repo.delete(cy) is False
    assert (await stored(session_factory, User, cy)).deleted_at == deleted.deleted_at


async def test_filters_naming_deleted_at_see_deleted_rows(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    await repo.delete(people["Cy"])
    await repo.delete(people["Eve"])

    assert names(await repo.list(deleted_at__isnotnull=True)) == ["Cy", "Eve"]
    assert names(await repo.list({"deleted_at__lt": utcnow()}, salary__gt=300)) == ["Eve"]
    assert await repo.count(deleted_at__isnotnull=True) == 2
    assert await repo.count(deleted_at__isnull=True) == 3
    assert await repo.exists(deleted_at__isnotnull=True, name="Cy")


async def test_restore(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    cy = people["Cy"]
    await repo.delete(cy)

    restored = await repo.restore(cy)

    assert restored is not None
    assert (restored.name, restored.deleted_at) == ("Cy", None)
    assert (await repo.get(cy)) is restored
    assert await repo.count() == 5
    assert (await stored(session_factory, User, cy)).deleted_at is None
    # Nothing to restore: a live row, a missing one.
    assert await repo.restore(cy) is None
    assert await repo.restore(max(people.values()) + 1) is None


async def test_hard_delete(
    repo: BaseRepository[User, UserCreate, UserUpdate],
    session_factory: Factory,
    people: dict[str, int],
) -> None:
    assert await repo.delete(people["Ada"], soft_delete=False) is True
    assert await repo.get(people["Ada"], include_deleted=True) is None
    assert await stored(session_factory, User, people["Ada"]) is None

    # A soft-deleted row can be purged too.
    await repo.delete(people["Bob"])
    assert await repo.delete(people["Bob"], soft_delete=False) is True
    assert await stored(session_factory, User, people["Bob"]) is None

    assert await repo.delete(people["Ada"], soft_delete=False) is False
    assert await repo.count(include_deleted=True) == 3


async def test_delete_missing_row_is_false(
    repo: BaseRepository[User, UserCreate, UserUpdate], people: dict[str, int]
) -> None:
    assert await repo.delete(max(people.values()) + 1) is False
    assert await repo.count() == 5


async def test_model_without_deleted_at_deletes_hard_and_refuses_soft(
    session: AsyncSession, session_factory: Factory
) -> None:
    repo = BaseRepository(Article, session)
    assert not repo.supports_soft_delete
    first = await repo.create({"title": "First"})
    second = await repo.create({"title": "Second"})

    with pytest.raises(ConfigurationError, match="soft-delete"):
        await repo.delete(first.id, soft_delete=True)
    with pytest.raises(ConfigurationError):
        await repo.restore(first.id)
    assert await stored(session_factory, Article, first.id) is not None

    assert await repo.delete(first.id) is True
    assert await stored(session_factory, Article, first.id) is None
    assert await repo.get(first.id, include_deleted=True) is None
    assert [a.title for a in await repo.list()] == ["Second"]
    assert await repo.count() == 1
    assert await repo.delete(second.id, soft_delete=False) is True
    assert await repo.count() == 0
