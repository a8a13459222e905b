"""bulk_create on every database: each input record is created, skipped or reported, once.

The accounting is checked against the rows read back from a brand-new session: each created id
must carry the unique email of the input record at the same position, so an id handed to the
wrong record fails the test even when the counts add up.
"""

import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baserepo import BaseRepository, BulkOperationResult, FailureKind
from tests.models import Article, User, UserCreate, UserUpdate

CREATED = None
"""Expected outcome of a record that must be created (otherwise: the FailureKind expected)."""

VALIDATION = FailureKind.VALIDATION
INTEGRITY = FailureKind.INTEGRITY
CONFLICT = FailureKind.CONFLICT
ROLLED_BACK = FailureKind.BATCH_ROLLED_BACK

TAKEN = "taken@example.com"


def user(i: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"user {i}", "email": f"user{i}@example.com", **extra}


async def users_by_id(factory: async_sessionmaker[AsyncSession]) -> dict[int, tuple[str, Any]]:
    """Every row in the table, read from a session that shares nothing with the one under test."""
    async with factory() as fresh:
        rows = await fresh.execute(select(User.id, User.name, User.email))
        return {row.id: (row.name, row.email) for row in rows}


async def seed_taken(factory: async_sessionmaker[AsyncSession]) -> int:
    """One pre-existing row whose email the inputs then collide with."""
    async with factory() as setup, setup.begin():
        taken = User(name="already here", email=TAKEN)
        setup.add(taken)
    return taken.id


async def check_accounting(
    result: BulkOperationResult,
    records: Sequence[Mapping[str, Any]],
    expected: Sequence[FailureKind | None],
    factory: async_sessionmaker[AsyncSession],
    *,
    existing: int = 0,
) -> None:
    """The whole invariant: counts, one outcome per index, ids aligned with their own rows."""
    assert len(expected) == len(records)
    assert result.success_count + result.error_count == len(records)
    assert result.total == len(records)
    assert len(result.failures) == len(result.errors) == result.error_count
    assert all(isinstance(e, str) for e in result.errors)

    outcome = {f.index: f.kind for f in result.failures}
    assert len(outcome) == len(result.failures), "an index is reported twice"
    wanted = {i: kind for i, kind in enumerate(expected) if kind is not CREATED}
    assert outcome == wanted
    for failure in result.failures:
        assert f"record {failure.index}" in failure.message
        if failure.kind is CONFLICT:
            assert "unique" in failure.message.lower()

    created_indexes = [i for i, kind in enumerate(expected) if kind is CREATED]
    assert result.success_count == len(created_indexes) == len(result.created_ids)
    assert len(set(result.created_ids)) == len(result.created_ids)

    rows = await users_by_id(factory)
    assert len(rows) == existing + result.success_count, "rows written that nobody reported"
    for index, new_id in zip(created_indexes, result.created_ids, strict=True):
        record = records[index]
        assert rows[new_id] == (record["name"], record.get("email")), (
            f"id {new_id} is not the row of record {index}"
        )


# -- mixed bad input ---------------------------------------------------------------------------

# Each record and what must become of it with batch_size=4 (batches 0-3, 4-7, 8-11).
MIXED: list[tuple[dict[str, Any], FailureKind | None, FailureKind | None]] = [
    # record, outcome without ignore_conflicts, outcome with ignore_conflicts
    (user(0), ROLLED_BACK, CREATED),
    ({"name": None, "email": "none@example.com"}, VALIDATION, VALIDATION),  # None in NOT NULL
    (user(2), ROLLED_BACK, CREATED),
    ({"name": "dup of 0", "email": "user0@example.com"}, INTEGRITY, CONFLICT),  # dup in input
    (user(4, nickname="Al"), VALIDATION, VALIDATION),  # unknown column
    (user(5, salary="a lot"), VALIDATION, VALIDATION),  # wrong type
    ({"name": "x" * 101, "email": "long@example.com"}, VALIDATION, VALIDATION),  # too long
    ({"name": "clash", "email": TAKEN}, INTEGRITY, CONFLICT),  # conflict with an existing row
    (user(8), CREATED, CREATED),
    ({"name": "no email"}, CREATED, CREATED),
    (user(10, salary=10), CREATED, CREATED),
    ({"email": "nameless@example.com"}, VALIDATION, VALIDATION),  # required field missing
]


async def test_mixed_bad_input_small_batches(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    records = [record for record, _, _ in MIXED]
    repo = BaseRepository(User, session)

    result = await repo.bulk_create(records, batch_size=4)

    await check_accounting(
        result, records, [plain for _, plain, _ in MIXED], session_factory, existing=1
    )
    by_index = {f.index: f for f in result.failures}
    # The culprits are named, and their batch-mates are told who sank them.
    assert "record 3" in by_index[0].message
    assert "record 7" not in by_index[0].message
    assert "unique" in by_index[3].message.lower()
    assert "unique" in by_index[7].message.lower()
    assert "name" in by_index[1].message
    assert "nickname" in by_index[4].message
    assert "salary" in by_index[5].message
    assert "101" in by_index[6].message
    assert "name" in by_index[11].message
    assert by_index[5].record == records[5]  # kept so the caller can retry it


async def test_mixed_bad_input_one_batch_names_the_first_culprit(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    records = [record for record, _, _ in MIXED]
    expected = [
        VALIDATION if plain is VALIDATION else (INTEGRITY if i == 3 else ROLLED_BACK)
        for i, (_, plain, _) in enumerate(MIXED)
    ]

    result = await BaseRepository(User, session).bulk_create(records)

    await check_accounting(result, records, expected, session_factory, existing=1)
    assert result.success_count == 0


async def test_mixed_bad_input_ignoring_conflicts(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    taken_id = await seed_taken(session_factory)
    records = [record for record, _, _ in MIXED]

    result = await BaseRepository(User, session).bulk_create(
        records, batch_size=4, ignore_conflicts=True
    )

    await check_accounting(
        result, records, [ignoring for _, _, ignoring in MIXED], session_factory, existing=1
    )
    assert [f.index for f in result.conflicts] == [3, 7]
    assert (await users_by_id(session_factory))[taken_id] == ("already here", TAKEN)
    # The guide's Conflict Resolution check finds exactly the skipped records.
    conflicts = [error for error in result.errors if "unique" in error.lower()]
    assert len(conflicts) == 2


async def test_ignore_conflicts_within_and_across_batches_keeps_ids_aligned(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    records = [
        user(0),
        {"name": "null email a"},
        user(0, name="dup 0 in batch"),
        {"name": "null email b", "email": None},  # NULLs never conflict
        user(4),
        {"name": "taken again", "email": TAKEN},
        user(6),
        user(4, name="dup 4 from an earlier batch"),
        user(8),
        user(8, name="dup 8 twice"),
        user(8, name="dup 8 thrice"),
        user(11),
    ]
    expected = [
        CREATED,
        CREATED,
        CONFLICT,
        CREATED,
        CREATED,
        CONFLICT,
        CREATED,
        CONFLICT,
        CREATED,
        CONFLICT,
        CONFLICT,
        CREATED,
    ]

    result = await BaseRepository(User, session).bulk_create(
        records, batch_size=3, ignore_conflicts=True
    )

    await check_accounting(result, records, expected, session_factory, existing=1)


# -- 1% bad rows in 10k ------------------------------------------------------------------------

TEN_K = 10_000
BATCH = 500
# Database-level duplicates: index -> index of the record whose email it repeats (None: TAKEN).
DUPLICATES: dict[int, int | None] = {
    1234: 1100,  # earlier in the same batch
    3333: 10,  # a row committed by batch 0
    5499: 5000,  # last of its batch repeats the first
    8000: None,  # first of its batch clashes with a pre-existing row
    9999: 9998,  # the very last record
}
VALIDATION_BAD = [i for i in range(TEN_K) if i % 100 == 37 and i < 9_500]


def _validation_bad(i: int) -> dict[str, Any]:
    flavour = (i // 100) % 5
    if flavour == 0:
        return {"name": None, "email": f"user{i}@example.com"}
    if flavour == 1:
        return user(i, salary="a lot")
    if flavour == 2:
        return user(i, nickname="x")
    if flavour == 3:
        return {"name": "x" * 101, "email": f"user{i}@example.com"}
    return {"email": f"user{i}@example.com"}


def ten_k_records() -> list[dict[str, Any]]:
    records = [user(i) for i in range(TEN_K)]
    for i in VALIDATION_BAD:
        records[i] = _validation_bad(i)
    for i, original in DUPLICATES.items():
        email = TAKEN if original is None else records[original]["email"]
        records[i] = {"name": f"user {i}", "email": email}
    return records


async def test_one_percent_bad_rows_in_10k(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await seed_taken(session_factory)
    records = ten_k_records()
    assert len(VALIDATION_BAD) + len(DUPLICATES) == TEN_K // 100
    failed_batches = {i // BATCH for i in DUPLICATES}
    bad = set(VALIDATION_BAD)
    expected: list[FailureKind | None] = []
    for i in range(TEN_K):
        if i in bad:
            expected.append(VALIDATION)  # never sinks its batch
        elif i in DUPLICATES:
            expected.append(INTEGRITY)
        elif i // BATCH in failed_batches:
            expected.append(ROLLED_BACK)
        else:
            expected.append(CREATED)

    result = await BaseRepository(User, session).bulk_create(records, batch_size=BATCH)

    await check_accounting(result, records, expected, session_factory, existing=1)
    assert result.success_count == TEN_K - len(bad) - (len(failed_batches) * BATCH - 20)
    by_index = {f.index: f for f in result.failures}
    for culprit in DUPLICATES:
        batch_start = culprit // BATCH * BATCH
        mate = next(
            i for i in range(batch_start, batch_start + BATCH) if expected[i] is ROLLED_BACK
        )
        assert f"record {culprit} failed" in by_index[mate].message


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [0, -1])
async def test_non_positive_batch_size_is_refused(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], batch_size: int
) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await BaseRepository(User, session).bulk_create([user(1)], batch_size=batch_size)
    assert await users_by_id(session_factory) == {}


async def test_empty_input_gives_an_empty_result(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    reports: list[int] = []
    assert await repo.bulk_create([], progress=reports.append) == BulkOperationResult()
    assert await repo.bulk_create(iter(())) == BulkOperationResult()
    assert reports == []
    assert await repo.count() == 0


async def test_huge_batch_size_is_clamped_to_the_parameter_limit(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    # Every column given: unclamped, 4,200 rows would need ~67k bind parameters in one
    # statement, past what asyncpg (32,767), SQLite (32,766) and MariaDB (65,535) accept.
    columns = len(User.__table__.columns) - 1
    records = [
        {
            **user(i),
            "department": "d",
            "salary": i,
            "is_active": True,
            "bonus_eligible": False,
            "role": "r",
            "status": "s",
            "type": "t",
            "last_login": None,
            "last_privilege_check": None,
            "deactivated_at": None,
            "deactivation_reason": None,
            "updated_at": None,
            "deleted_at": None,
        }
        for i in range(4_200)
    ]
    assert len(records[0]) == columns - 1  # all but created_at, left to its default
    reports: list[int] = []

    result = await BaseRepository(User, session).bulk_create(
        records, batch_size=10**6, progress=reports.append
    )

    assert (result.success_count, result.error_count) == (4_200, 0)
    if session.bind.dialect.name in ("postgresql", "sqlite"):  # type: ignore[union-attr]
        # Arrays and COPY carry a column per parameter, not a value; SQLite splits the batch
        # into statements within the limit itself: nothing to split into batches.
        assert reports == [4_200]
    else:
        assert len(reports) >= 2, "the batch was not split"
    assert reports[-1] == 4_200
    rows = await users_by_id(session_factory)
    assert [rows[i] for i in result.created_ids] == [(r["name"], r["email"]) for r in records]


# -- input shapes ------------------------------------------------------------------------------

SHAPE_RECORDS = [user(i) for i in range(7)] + [{"name": None}, user(0, name="dup")]
SHAPE_EXPECTED = [CREATED] * 6 + [ROLLED_BACK, VALIDATION, INTEGRITY]


def _as_list() -> Any:
    return list(SHAPE_RECORDS)


def _as_tuple() -> Any:
    return tuple(SHAPE_RECORDS)


def _as_generator() -> Any:
    return (dict(r) for r in SHAPE_RECORDS)


def _as_async_generator() -> Any:
    async def records() -> AsyncIterator[dict[str, Any]]:
        for r in SHAPE_RECORDS:
            yield dict(r)

    return records()


@pytest.mark.parametrize(
    "shape", [_as_list, _as_tuple, _as_generator, _as_async_generator], ids=lambda f: f.__name__
)
async def test_any_iterable_or_async_iterable(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession], shape: Any
) -> None:
    result = await BaseRepository(User, session).bulk_create(shape(), batch_size=3)
    await check_accounting(result, SHAPE_RECORDS, SHAPE_EXPECTED, session_factory)


async def test_async_generator_is_consumed_one_batch_at_a_time(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    size, total = 4, 14
    committed: list[int] = []
    seen_before_pulling: list[tuple[int, int]] = []

    async def records() -> AsyncIterator[dict[str, Any]]:
        for i in range(total):
            if i % size == 0:
                async with session_factory() as fresh:
                    visible = await fresh.scalar(select(func.count()).select_from(User))
                seen_before_pulling.append((i, visible or 0))
            yield user(i)

    result = await BaseRepository(User, session).bulk_create(
        records(), batch_size=size, progress=committed.append
    )

    assert result.success_count == total
    # Record i is pulled only after every earlier batch is committed: never more than one
    # batch is held, and the caller's rows are visible to others as soon as a batch lands.
    assert seen_before_pulling == [(0, 0), (4, 4), (8, 8), (12, 12)]
    assert committed == [4, 8, 12, 14]


async def test_generator_is_not_read_ahead(session: AsyncSession) -> None:
    pulled = 0
    pulled_at_report: list[tuple[int, int]] = []

    def records() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(10):
            pulled += 1
            yield user(i)

    await BaseRepository(User, session).bulk_create(
        records(), batch_size=3, progress=lambda done: pulled_at_report.append((done, pulled))
    )
    assert pulled_at_report == [(3, 3), (6, 6), (9, 9), (10, 10)]


async def test_pydantic_create_schema_instances_and_mappings(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository[User, UserCreate, UserUpdate](User, session)
    records: list[Any] = [
        UserCreate(name="Ada", email="ada@example.com", salary=10, is_active=False),
        {"name": "Bob", "email": "bob@example.com"},
        {"name": "Cy", "email": "cy@example.com", "salary": "lots"},  # pydantic refuses it
        {"name": "Di", "email": "di@example.com", "nickname": "D"},  # extra="forbid"
        UserCreate(name="Eve"),
    ]

    result = await repo.bulk_create(records, batch_size=2)

    plain = [r.model_dump() if isinstance(r, UserCreate) else r for r in records]
    await check_accounting(
        result, plain, [CREATED, CREATED, VALIDATION, VALIDATION, CREATED], session_factory
    )
    ada = await repo.get(result.created_ids[0])
    assert ada is not None
    assert (ada.salary, ada.is_active, ada.bonus_eligible) == (10, False, False)
    eve = await repo.get(result.created_ids[2])
    assert eve is not None
    assert eve.email is None
    assert eve.is_active is True  # the schema's default, not a NULL


async def test_dataclass_records(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    @dataclasses.dataclass
    class NewUser:
        name: str
        email: str

    records = [NewUser("Ada", "ada@example.com"), NewUser("Bob", "bob@example.com")]
    result = await BaseRepository(User, session).bulk_create(records)
    await check_accounting(
        result, [dataclasses.asdict(r) for r in records], [CREATED, CREATED], session_factory
    )


async def test_progress_callback_sync_and_async(session: AsyncSession) -> None:
    repo = BaseRepository(User, session)
    records = [user(i) for i in range(10)] + [{"name": None}, user(11)]
    sync_reports: list[int] = []
    async_reports: list[int] = []

    async def report(done: int) -> None:
        async_reports.append(done)

    await repo.bulk_create(records[:6], batch_size=4, progress=sync_reports.append)
    await repo.bulk_create(records[6:], batch_size=4, progress=report)

    assert sync_reports == [4, 6]
    assert async_reports == [4, 6]  # failed records count as handled too
    assert await repo.count() == 11


# -- the guide's helpers, as written ---------------------------------------------------------


async def test_guide_stream_bulk_create(
    session: AsyncSession, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    repo = BaseRepository[User, UserCreate, UserUpdate](User, session)

    # For very large datasets, use streaming approach
    async def stream_bulk_create(data_generator, batch_size: int = 100):  # type: ignore[no-untyped-def]
        batch = []
        total_processed = 0

        async for item in data_generator:
            batch.append(item)

            if len(batch) >= batch_size:
                result = await repo.bulk_create(batch)
                total_processed += result.success_count
                batch = []

        # Process remaining items
        if batch:
            result = await repo.bulk_create(batch)
            total_processed += result.success_count

        return total_processed

    async def data() -> AsyncIterator[dict[str, Any]]:
        for i in range(250):
            yield user(i)

    assert await stream_bulk_create(data()) == 250
    rows = await users_by_id(session_factory)
    assert sorted(email for _, email in rows.values()) == sorted(
        user(i)["email"] for i in range(250)
    )


async def test_guide_process_large_dataset(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = BaseRepository[User, UserCreate, UserUpdate](User, session)

    # Process large datasets in chunks
    async def process_large_dataset(total_records: int, chunk_size: int = 1000):  # type: ignore[no-untyped-def]
        total_processed = 0

        for chunk_start in range(0, total_records, chunk_size):
            chunk_end = min(chunk_start + chunk_size, total_records)

            # Generate chunk data
            chunk_data = [
                {"name": f"User {i}", "email": f"user{i}@example.com"}
                for i in range(chunk_start, chunk_end)
            ]

            # Process chunk
            result = await repo.bulk_create(
                chunk_data,
                batch_size=100,
                emit_events=False,  # Disable for performance
            )

            total_processed += result.success_count
            print(
                f"Processed chunk {chunk_start // chunk_size + 1}: {result.success_count} records"
            )

        return total_processed

    # Process 10,000 records efficiently
    total = await process_large_dataset(10000)
    print(f"Total processed: {total}")

    assert total == 10_000
    out = capsys.readouterr().out
    assert "Processed chunk 10: 1000 records" in out
    assert "Total processed: 10000" in out
    rows = await users_by_id(session_factory)
    assert {email for _, email in rows.values()} == {f"user{i}@example.com" for i in range(10_000)}
    assert all(name == f"User {email[4:-12]}" for name, email in rows.values())


# -- nothing altered on the way in -----------------------------------------------------------


@pytest.mark.parametrize("ignore_conflicts", [False, True], ids=["plain", "ignoring_conflicts"])
async def test_out_of_range_numbers_are_refused_not_clamped(
    session: AsyncSession,
    session_factory: async_sessionmaker[AsyncSession],
    ignore_conflicts: bool,
) -> None:
    # MariaDB's INSERT IGNORE (used for ignore_conflicts) turns out-of-range errors into
    # warnings and stores the nearest value: such records must be refused before the database.
    records = [
        user(0, salary=2**40),
        user(1, salary=-(2**31) - 1),
        user(2, salary=2**31 - 1),
        user(3, salary=-(2**31)),
    ]
    result = await BaseRepository(User, session).bulk_create(
        records, ignore_conflicts=ignore_conflicts
    )
    await check_accounting(
        result, records, [VALIDATION, VALIDATION, CREATED, CREATED], session_factory
    )
    assert "salary" in result.errors[0]
    async with session_factory() as fresh:
        stored = (await fresh.scalars(select(User.salary).order_by(User.id))).all()
    assert stored == [2**31 - 1, -(2**31)]

    articles = [
        {"title": "too big", "score": Decimal("123456789.5")},
        {"title": "largest", "score": Decimal("99999999.99")},
        {"title": "too big negative", "score": -(10**8)},
    ]
    result = await BaseRepository(Article, session).bulk_create(
        articles, ignore_conflicts=ignore_conflicts
    )
    assert [(f.index, f.kind) for f in result.failures] == [(0, VALIDATION), (2, VALIDATION)]
    async with session_factory() as fresh:
        scores = (await fresh.scalars(select(Article.score))).all()
    assert scores == [Decimal("99999999.99")]
