"""The guided tour behind ``baserepo demo``: the user guide's bulk and cache scenarios, run
for real.

Each step calls the repository exactly as the guide does, prints what happened and adds its
figures to the summary that :func:`main` returns (the smoke test asserts on it). The demo owns
its database: it drops and recreates its one table at start, so it can be run again and again.
The cache step uses the in-process backend, or Redis when given a URL; on Redis it works under
a key prefix of its own run and deletes its keys at the end.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Boolean, DateTime, Integer, String, func, make_url, select, text
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ._engine import create_engine
from ._events import EventBus, EventType, RepositoryEvent
from ._repository import BaseRepository
from ._results import FailureKind
from .cache import CacheConfig, CacheStats, CacheWarmingConfig
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._results import BulkOperationResult

__all__ = [
    "DEFAULT_ROWS",
    "MIN_ROWS",
    "PlainReporter",
    "Reporter",
    "User",
    "default_database_url",
    "default_redis_url",
    "ensure_database",
    "main",
    "population",
    "utcnow",
]

DEFAULT_ROWS = 20_000
"""Rows written by the long, streamed ``bulk_create`` step."""
MIN_ROWS = 100
POPULATION_LIMIT = 1_000
"""The staff table and the individual-vs-bulk comparison use ``min(rows, 1000)`` rows."""
DEPARTMENTS = ("engineering", "sales", "marketing", "support")
GUIDE_USERS = (
    {"name": "John Doe", "email": "john@example.com"},
    {"name": "Jane Smith", "email": "jane@example.com"},
    {"name": "Bob Wilson", "email": "bob@example.com"},
)


CACHE_KEY_PREFIX = "baserepo-demo"
"""Start of the cache's key prefix; each run adds its own suffix and deletes its keys."""
CACHED_READS = 5
"""Cached calls timed after the cold one (their median is the cached time)."""


def utcnow() -> datetime:
    """Naive UTC, the clock the repository stamps ``deleted_at`` with."""
    return datetime.now(UTC).replace(tzinfo=None)


# MariaDB's DATETIME drops fractions of a second unless asked to keep them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    pass


class User(Base):
    """Every column the guide's examples write or filter on; ``deleted_at`` turns soft delete on."""

    __tablename__ = "demo_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    department: Mapped[str | None] = mapped_column(String(50))
    salary: Mapped[int | None] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    bonus_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str] = mapped_column(String(20), default="member")
    status: Mapped[str] = mapped_column(String(20), default="active")
    type: Mapped[str] = mapped_column(String(20), default="regular")
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    last_privilege_check: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivated_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deactivation_reason: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(Timestamp, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


UserRepository = BaseRepository[User, dict[str, Any], dict[str, Any]]


class Reporter(Protocol):
    """Where the demo's narration goes (plain text here, rich tables in the CLI)."""

    def section(self, title: str) -> None: ...

    def say(self, message: str) -> None: ...

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None: ...

    def progress(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]:
        """A context manager yielding ``update(done)``, called with the records handled so far."""
        ...


class PlainReporter:
    """Narration with ``print`` only, for machines without rich."""

    def section(self, title: str) -> None:
        print(f"\n== {title} ==")

    def say(self, message: str) -> None:
        print(message)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[str(c) for c in columns], *([_shorten(str(c), 100) for c in row] for row in rows)]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        print(title)
        for number, row in enumerate(cells):
            padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  " + "  ".join(padded).rstrip())
            if number == 0:
                print("  " + "  ".join("-" * width for width in widths))

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        shown = -1

        def update(done: int) -> None:
            nonlocal shown
            tenth = done * 10 // max(total, 1)
            if tenth != shown:
                shown = tenth
                bar = "#" * tenth + "." * (10 - tenth)
                print(f"{description} [{bar}] {done:,}/{total:,}")

        yield update


class EventCounter:
    """An event handler that counts the events (and the rows they report) per type."""

    def __init__(self) -> None:
        self.events: Counter[EventType] = Counter()
        self.rows: Counter[EventType] = Counter()

    async def __call__(self, event: RepositoryEvent) -> None:
        self.events[event.type] += 1
        self.rows[event.type] += len(event.ids)

    def subscribe_to(self, bus: EventBus) -> None:
        for event_type in EventType:
            bus.subscribe(event_type, self, model=User)

    def snapshot(self) -> tuple[Counter[EventType], Counter[EventType]]:
        return Counter(self.events), Counter(self.rows)


def default_database_url() -> str:
    """``$BASEREPO_DATABASE_URL``, else a SQLite file in the system's temporary directory."""
    url = os.environ.get("BASEREPO_DATABASE_URL")
    if url:
        return url
    return f"sqlite+aiosqlite:///{Path(tempfile.gettempdir()) / 'baserepo_demo.sqlite3'}"


def default_redis_url() -> str | None:
    """``$BASEREPO_REDIS_URL``, else None: the demo's cache then runs in-process."""
    return os.environ.get("BASEREPO_REDIS_URL") or None


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


async def ensure_database(url: str) -> None:
    """Create the URL's database on a PostgreSQL or MariaDB server when it does not exist."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" or not parsed.database:
        return
    if backend == "postgresql":
        admin_url = parsed.set(database="postgres")
        exists_sql = "SELECT 1 FROM pg_database WHERE datname = :name"
    else:
        admin_url = parsed.set(database="")
        exists_sql = "SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if not await conn.scalar(text(exists_sql), {"name": parsed.database}):
                quoted = admin.dialect.identifier_preparer.quote(parsed.database)
                await conn.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        await admin.dispose()


def population(size: int, now: datetime) -> list[dict[str, Any]]:
    """The staff the update and delete steps work on; deterministic for a given ``now``.

    Every 40th row (offset 7) was soft-deleted 400 days ago (for the cleanup step); every 25th
    (offset 3) is old test data ``test_<i>@...`` and the next one a decoy ``tester<i>@...``
    that the escaped ``email__startswith="test_"`` must not match.
    """
    people: list[dict[str, Any]] = []
    for i in range(size):
        if i % 40 == 7:
            people.append(
                {
                    "name": f"Archived {i}",
                    "email": f"archived{i}@example.com",
                    "is_active": False,
                    "status": "inactive",
                    "deleted_at": now - timedelta(days=400),
                }
            )
        elif i % 25 in (3, 4):
            prefix = "test_" if i % 25 == 3 else "tester"
            people.append(
                {
                    "name": f"Test {i}",
                    "email": f"{prefix}{i}@example.com",
                    "department": "qa",
                    "type": "temporary",
                    "last_login": now - timedelta(days=1),
                    "created_at": now - timedelta(days=60),
                }
            )
        else:
            active = i % 7 != 0
            people.append(
                {
                    "name": f"User {i}",
                    "email": f"user{i}@example.com",
                    "department": DEPARTMENTS[i % len(DEPARTMENTS)],
                    "salary": 30_000 + (i * 7_919 % 60) * 1_000,
                    "is_active": active,
                    "status": "active" if active else "inactive",
                    "role": "admin" if i % 50 == 0 else "member",
                    "last_login": now - timedelta(days=i % 180, hours=12),
                }
            )
    return people


async def main(
    database_url: str | None = None,
    *,
    rows: int = DEFAULT_ROWS,
    reporter: Reporter | None = None,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Run every step on a fresh ``demo_users`` table and return what each one did.

    Args:
        database_url: an async SQLAlchemy URL; its database is created if missing.
            Defaults to :func:`default_database_url`.
        rows: records written by the long streamed step (the staff table and the
            individual-vs-bulk comparison use ``min(rows, 1000)``).
        reporter: where the narration goes; plain ``print`` by default.
        redis_url: the cache step's Redis (``redis://...``); None runs the cache in-process.
            The CLI takes it from ``--redis-url`` or :func:`default_redis_url`.
    """
    if rows < MIN_ROWS:
        raise ValueError(f"rows must be at least {MIN_ROWS}, got {rows}")
    url = database_url or default_database_url()
    out: Reporter = reporter or PlainReporter()
    started = time.perf_counter()
    async with AsyncExitStack() as cleanup:
        # Connect to Redis first: a wrong URL fails the demo now, not after the bulk steps.
        cache_client = None
        if redis_url:
            cache_client = await _redis_client(redis_url)
            cleanup.push_async_callback(cache_client.aclose)
        await ensure_database(url)
        engine = create_engine(url)
        cleanup.push_async_callback(engine.dispose)
        await _fresh_schema(engine)
        bus = EventBus()
        counter = EventCounter()
        counter.subscribe_to(bus)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            repo = UserRepository(User, session, event_bus=bus)
            await session.connection()  # the server version is known once connected
            database, version = _server(engine)
            out.section(f"baserepo demo on {database} {version}")
            out.say(f"database: {make_url(url).render_as_string(hide_password=True)}")
            summary: dict[str, Any] = {"database": database, "rows": rows}
            summary["basic"] = await _basic_create(repo, out)
            summary["advanced"] = await _advanced_create(repo, out, counter, rows)
            summary["performance"] = await _performance(repo, out, min(rows, POPULATION_LIMIT))
            summary["update"] = await _updates(repo, out, counter)
            summary["delete"] = await _deletes(repo, out, counter)
            summary["errors"] = await _error_handling(repo, out)
            summary["rollback"] = await _transaction_rollback(session, repo, out, counter)
            summary["progress"] = await _long_stream(repo, out, rows)
            summary["cache"] = await _query_cache(session, out, bus, cache_client, redis_url)
            summary["final"] = {
                "visible": await repo.count(),
                "soft_deleted": await repo.count(deleted_at__isnotnull=True),
            }
    summary["seconds"] = round(time.perf_counter() - started, 2)
    _print_summary(out, summary)
    return summary


def _server(engine: AsyncEngine) -> tuple[str, str]:
    dialect = engine.dialect
    name = "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    return name, ".".join(str(part) for part in dialect.server_version_info or ())


async def _fresh_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)


async def _basic_create(repo: UserRepository, out: Reporter) -> dict[str, Any]:
    out.section("1. bulk_create: basic usage")
    result: BulkOperationResult = await repo.bulk_create([dict(user) for user in GUIDE_USERS])
    out.say(f"Created: {result.success_count}")
    out.say(f"Errors: {result.error_count}")
    out.say(f"Created IDs: {result.created_ids}")
    return {
        "created": result.success_count,
        "errors": result.error_count,
        "ids": list(result.created_ids),
    }


async def _advanced_create(
    repo: UserRepository, out: Reporter, counter: EventCounter, rows: int
) -> dict[str, Any]:
    out.section("2. bulk_create: batch_size, emit_events, ignore_conflicts")
    staff = population(min(rows, POPULATION_LIMIT), utcnow())
    # Three records repeat the guide's users already in the table, two repeat records of
    # this very input: all five must come back as skipped conflicts, not vanish.
    duplicates = [
        *({"name": f"{u['name']} (again)", "email": u["email"]} for u in GUIDE_USERS),
        {"name": "User 1 (again)", "email": "user1@example.com"},
        {"name": "User 2 (again)", "email": "user2@example.com"},
    ]
    events_before, rows_before = counter.snapshot()
    result = await repo.bulk_create(
        data_list=[*staff, *duplicates],
        batch_size=100,
        emit_events=True,
        ignore_conflicts=True,
    )
    events = counter.events[EventType.CREATED] - events_before[EventType.CREATED]
    event_rows = counter.rows[EventType.CREATED] - rows_before[EventType.CREATED]
    out.say(f"Input: {len(staff) + len(duplicates)} records in batches of 100")
    out.say(f"Created: {result.success_count}, skipped: {result.error_count}")
    if result.error_count > 0:
        out.say("Errors occurred:")
        for error in result.errors:
            out.say(f"  - {error}")
    shown = ", ".join(str(user_id) for user_id in result.created_ids[:5])
    out.say(f"Created users: {shown}, ... ({len(result.created_ids)} ids, in input order)")
    conflicts = [error for error in result.errors if "unique" in error.lower()]
    out.say(f"Handled {len(conflicts)} unique constraint conflicts")
    out.say(f"Subscribed handler received {events} 'created' events for {event_rows} rows")
    return {
        "input": len(staff) + len(duplicates),
        "population": len(staff),
        "created": result.success_count,
        "conflicts": len(conflicts),
        "conflict_indexes": [failure.index for failure in result.conflicts],
        "events": events,
        "event_rows": event_rows,
    }


async def _performance(repo: UserRepository, out: Reporter, size: int) -> dict[str, Any]:
    out.section(f"3. Performance comparison: {size} x repo.create vs one bulk_create")

    def users(kind: str) -> list[dict[str, Any]]:
        return [
            {"name": f"Perf {kind} {i}", "email": f"perf.{kind}{i}@example.com", "type": "perf"}
            for i in range(size)
        ]

    individual_data, bulk_data = users("individual"), users("bulk")
    with out.progress("repo.create one by one", size) as update:
        start_time = time.perf_counter()
        for done, data in enumerate(individual_data, start=1):
            await repo.create(data)
            if done % 50 == 0 or done == size:
                update(done)
        individual_time = time.perf_counter() - start_time

    start_time = time.perf_counter()
    result = await repo.bulk_create(bulk_data)
    bulk_time = time.perf_counter() - start_time

    speedup = individual_time / bulk_time
    out.say(f"Individual: {individual_time:.2f}s ({size / individual_time:,.0f} rows/s)")
    out.say(f"Bulk: {bulk_time:.2f}s ({result.success_count / bulk_time:,.0f} rows/s)")
    out.say(f"Speedup: {speedup:.1f}x")
    return {
        "rows": size,
        "individual_created": await repo.count(email__startswith="perf.individual"),
        "bulk_created": result.success_count,
        "individual_seconds": round(individual_time, 4),
        "bulk_seconds": round(bulk_time, 4),
        "speedup": round(speedup, 1),
    }


async def _updates(repo: UserRepository, out: Reporter, counter: EventCounter) -> dict[str, Any]:
    out.section("4. bulk_update")
    result = await repo.bulk_update(
        filters={"department": "engineering"},
        update_data={"salary": 80000, "updated_at": utcnow()},
    )
    basic = result.success_count
    out.say(f"Basic: updated {basic} users in engineering to a salary of 80000")

    events_before, rows_before = counter.snapshot()
    result = await repo.bulk_update(
        filters={"salary__lt": 50000, "department__in": ["sales", "marketing"], "is_active": True},
        update_data={"salary": 55000, "bonus_eligible": True},
        batch_size=50,
        emit_events=True,
    )
    complex_ = result.success_count
    update_events = counter.events[EventType.UPDATED] - events_before[EventType.UPDATED]
    update_rows = counter.rows[EventType.UPDATED] - rows_before[EventType.UPDATED]
    out.say(
        f"Complex filters: {complex_} active sales/marketing users under 50000 raised to 55000 "
        f"in batches of 50 ({update_events} 'updated' events for {update_rows} rows)"
    )

    old_date = utcnow() - timedelta(days=90)
    result = await repo.bulk_update(
        filters={"last_login__lt": old_date, "is_active": True},
        update_data={
            "is_active": False,
            "deactivated_at": utcnow(),
            "deactivation_reason": "inactive",
        },
    )
    conditional = result.success_count
    still_matching = await repo.count(last_login__lt=old_date, is_active=True)
    out.say(
        f"Conditional: deactivated {conditional} users not seen for 90 days "
        f"({still_matching} still match the filter)"
    )

    result = await repo.bulk_update(
        filters={"role": "admin"},
        update_data={"last_privilege_check": utcnow()},
        emit_events=True,
    )
    out.say(f"Event management: stamped last_privilege_check on {result.success_count} admins")
    return {
        "basic": basic,
        "complex": complex_,
        "complex_events": update_events,
        "complex_event_rows": update_rows,
        "conditional": conditional,
        "conditional_left": still_matching,
        "admins": result.success_count,
    }


async def _deletes(repo: UserRepository, out: Reporter, counter: EventCounter) -> dict[str, Any]:
    out.section("5. bulk_delete")
    _, rows_before = counter.snapshot()
    result = await repo.bulk_delete(
        filters={"is_active": False}, soft_delete=True, emit_events=True
    )
    soft = result.success_count
    soft_rows = counter.rows[EventType.SOFT_DELETED] - rows_before[EventType.SOFT_DELETED]
    out.say(f"Soft deleted {soft} users ({soft_rows} rows reported by 'soft_deleted' events)")
    out.say(
        f"  still visible with is_active=False: {await repo.count(is_active=False)}; "
        f"with include_deleted=True: {await repo.count(is_active=False, include_deleted=True)}"
    )

    decoys_before = await repo.count(email__startswith="tester")
    result = await repo.bulk_delete(
        filters={"email__startswith": "test_", "created_at__lt": utcnow() - timedelta(days=30)},
        soft_delete=False,
        batch_size=25,
    )
    hard = result.success_count
    decoys_after = await repo.count(email__startswith="tester")
    out.say(f"Permanently deleted {hard} records of old test data (batches of 25)")
    out.say(
        f"  'tester...' addresses kept: {decoys_after} of {decoys_before} "
        "(the '_' in 'test_' is matched literally, not as a LIKE wildcard)"
    )

    cleanup_date = utcnow() - timedelta(days=365)
    result = await repo.bulk_delete(
        filters={"deleted_at__lt": cleanup_date, "deleted_at__isnotnull": True},
        soft_delete=False,
        emit_events=False,
    )
    cleanup = result.success_count
    out.say(f"Cleanup: purged {cleanup} records soft-deleted more than a year ago")
    return {
        "soft": soft,
        "soft_event_rows": soft_rows,
        "hard": hard,
        "decoys_kept": decoys_after,
        "decoys_before": decoys_before,
        "cleanup": cleanup,
    }


def _bad_batch() -> list[dict[str, Any]]:
    good: list[dict[str, Any]] = [
        {"name": f"Recovered {i}", "email": f"recovered{i}@example.com"} for i in range(12)
    ]
    good[1] = {"name": None, "email": "noname@example.com"}  # NOT NULL column
    good[3] = {**good[3], "nickname": "Ace"}  # no such column
    good[5] = {**good[5], "email": "john@example.com"}  # already in the table
    good[7] = {**good[7], "salary": "lots"}  # not an integer
    good[9] = {**good[9], "email": good[8]["email"]}  # repeats record 8
    return good


async def _error_handling(repo: UserRepository, out: Reporter) -> dict[str, Any]:
    out.section("6. Error handling: 12 records, 5 of them bad, batches of 4")
    users_data = _bad_batch()
    result = await repo.bulk_create(users_data, batch_size=4)
    if result.error_count > 0:
        out.say(
            f"Partial success: {result.success_count} created, {result.error_count} failed "
            "(a batch that the database refuses is rolled back whole)"
        )
        out.table(
            "Per-record failures",
            ("index", "kind", "reason"),
            [(f.index, f.kind.value, f.message) for f in result.failures],
        )
    else:
        out.say(f"Complete success: {result.success_count} users created")

    # Error recovery: records refused only because a neighbour sank their batch are retried.
    retry = [
        f.record for f in result.failures if f.kind is FailureKind.BATCH_ROLLED_BACK and f.record
    ]
    retried = await repo.bulk_create(retry)
    out.say(
        f"Retried the {len(retry)} innocent records of rolled-back batches: "
        f"{retried.success_count} created, {retried.error_count} failed"
    )
    return {
        "input": len(users_data),
        "created": result.success_count,
        "failed": result.error_count,
        "failures": [(f.index, f.kind.value) for f in result.failures],
        "retried": len(retry),
        "retry_created": retried.success_count,
    }


async def _transaction_rollback(
    session: AsyncSession, repo: UserRepository, out: Reporter, counter: EventCounter
) -> dict[str, Any]:
    out.section("7. Transaction rollback")
    rows_before = await repo.count(include_deleted=True)
    events_before = sum(counter.events.values())
    batch1 = [{"name": f"Tx A{i}", "email": f"tx.a{i}@example.com"} for i in range(50)]
    batch2 = [{"name": f"Tx B{i}", "email": f"tx.b{i}@example.com"} for i in range(50)]
    batch2[17]["email"] = "jane@example.com"  # already taken
    inside: list[BulkOperationResult] = []
    rolled_back = False
    # The count above opened an implicit transaction; begin() needs it finished first.
    await session.commit()
    try:
        async with session.begin():
            result1 = await repo.bulk_create(batch1)
            result2 = await repo.bulk_create(batch2, batch_size=10)
            inside = [result1, result2]
            out.say(
                f"Inside the transaction: batch1 created {result1.success_count}, "
                f"batch2 created {result2.success_count} and failed {result2.error_count} "
                "(its bad SAVEPOINT rolled back alone)"
            )
            if result1.error_count > 0 or result2.error_count > 0:
                raise RuntimeError("Batch processing failed")
    except RuntimeError:
        rolled_back = True
        out.say("All operations rolled back")
    rows_after = await repo.count(include_deleted=True)
    events = sum(counter.events.values()) - events_before
    out.say(f"Rows before: {rows_before}, after: {rows_after}; events delivered: {events}")
    return {
        "rolled_back": rolled_back,
        "created_inside": sum(r.success_count for r in inside),
        "failed_inside": sum(r.error_count for r in inside),
        "rows_before": rows_before,
        "rows_after": rows_after,
        "events": events,
    }


async def _stream(rows: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(rows):
        if i % 1_000 == 0:
            await asyncio.sleep(0)  # as a real source (a file, an API) would
        yield {
            "name": f"Streamed {i}",
            "email": f"stream{i}@example.com",
            "department": DEPARTMENTS[i % len(DEPARTMENTS)],
            "salary": 40_000 + i % 50 * 1_000,
            "type": "imported",
        }


async def _long_stream(repo: UserRepository, out: Reporter, rows: int) -> dict[str, Any]:
    out.section(f"8. A long bulk_create: {rows:,} rows from an async generator")
    calls: list[int] = []
    with out.progress("bulk_create", rows) as update:

        def progress(done: int) -> None:
            calls.append(done)
            update(done)

        start_time = time.perf_counter()
        result = await repo.bulk_create(_stream(rows), emit_events=False, progress=progress)
        seconds = time.perf_counter() - start_time
    out.say(
        f"Created {result.success_count:,} rows in {seconds:.2f}s "
        f"({result.success_count / seconds:,.0f} rows/s), {result.error_count} errors"
    )
    return {
        "rows": rows,
        "created": result.success_count,
        "errors": result.error_count,
        "seconds": round(seconds, 3),
        "rows_per_second": round(result.success_count / seconds),
        "progress_calls": len(calls),
        "progress_last": calls[-1] if calls else 0,
        "progress_monotonic": calls == sorted(calls),
    }


async def _query_cache(
    session: AsyncSession, out: Reporter, bus: EventBus, client: Any, redis_url: str | None
) -> dict[str, Any]:
    out.section("9. Query cache: cold vs cached, popular queries, warming, invalidation")
    # A prefix of this run's own: entries of an earlier run (of another table that had the
    # same name) must never be served, and this run's keys are deleted at the end.
    prefix = f"{CACHE_KEY_PREFIX}-{uuid.uuid4().hex[:8]}"
    warming_config = CacheWarmingConfig(
        enabled=True,
        popular_queries_limit=10,
        min_usage_count=5,
        warm_interval_seconds=3600,
        track_usage=True,
    )
    cache_config = CacheConfig(
        redis_client=client, default_ttl=600, warming_config=warming_config, key_prefix=prefix
    )
    backend = f"Redis at {redact(redis_url)}" if redis_url else "in-process (no server)"
    out.say(f"Cache backend: {backend}; keys under {prefix}:")
    repo = UserRepository(User, session, cache_config, event_bus=bus)
    try:
        return await _cache_scenarios(
            session, repo, cache_config, out, "redis" if client else "memory"
        )
    finally:
        await cache_config.settle()
        if client is not None:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1_000)]
            if keys:
                await client.unlink(*keys)


async def _redis_client(url: str) -> Any:
    try:
        from redis.asyncio import Redis  # the demo's only use of redis-py, and optional
    except ImportError:
        raise ConfigurationError(
            "a Redis URL needs redis-py: pip install 'baserepo[redis]'"
        ) from None
    client = Redis.from_url(url, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as error:
        await client.aclose()
        raise ConnectionError(f"Redis unreachable at {redact(url)}: {error}") from error
    return client


async def _cache_scenarios(
    session: AsyncSession,
    repo: UserRepository,
    cache_config: CacheConfig,
    out: Reporter,
    backend: str,
) -> dict[str, Any]:
    def stats() -> CacheStats:
        return cache_config.stats(User.__tablename__)  # what repo.cache_stats() returns

    async def served(call: Callable[[], Awaitable[Any]]) -> tuple[str, float]:
        """Run one read as a request would (no transaction left open); hit, miss or bypass."""
        before = stats()
        start = time.perf_counter()
        await call()
        seconds = time.perf_counter() - start
        await session.commit()
        after = stats()
        if after.hits > before.hits:
            return "hit", seconds
        return ("miss" if after.misses > before.misses else "bypass"), seconds

    # Each read starts outside a transaction, as a web request does: a read in a transaction
    # whose snapshot may predate the cache's generation serves from the cache but never fills.
    await session.commit()

    def guide_query() -> Awaitable[Any]:
        return repo.list(limit=100, is_active=True)

    # The guide's "Cache Performance Monitoring".
    cold_kind, cold_time = await served(guide_query)
    await cache_config.settle()  # the fill runs in the background: let it land, untimed
    cached = [await served(guide_query) for _ in range(CACHED_READS)]
    cached_time = statistics.median(seconds for _, seconds in cached)
    speedup = cold_time / cached_time if cached_time > 0 else 0
    out.say(
        f"Cold list(limit=100, is_active=True): {cold_time * 1000:.2f} ms ({cold_kind}); "
        f"cached: {cached_time * 1000:.3f} ms (median of {CACHED_READS} hits)"
    )
    out.say(f"Cache speedup: {speedup:.1f}x")

    # Popular queries: with the guide's query, three are used at least min_usage_count (5)
    # times, two are not.
    first_id = await session.scalar(select(func.min(User.id)))
    await session.commit()
    usage: list[tuple[Callable[[], Awaitable[Any]], int]] = [
        (lambda: repo.count(is_active=True), 6),
        (lambda: repo.list(department="sales", limit=20), 5),
        (lambda: repo.get(first_id), 3),
        (lambda: repo.list(department="qa"), 2),
    ]
    for call, times in usage:
        for _ in range(times):
            await served(call)
            await cache_config.settle()
    # cache_config is the guide's repo._cache_config.
    popular_queries = cache_config.get_popular_queries()
    usage_stats = cache_config._query_usage
    # Counts as they are now: warming decays them (so yesterday's hot queries fade).
    popular_uses = sorted((q.operation, q.usage_count) for q in popular_queries)
    tracked = len(usage_stats)
    out.say(f"Popular queries: {len(popular_queries)}")
    out.say(f"Total tracked queries: {tracked}")
    out.table(
        "Popular queries (used at least 5 times)",
        ("operation", "query", "uses"),
        [(q.operation, _describe(q.spec), f"{q.usage_count:g}") for q in popular_queries],
    )

    # The guide's "Cache Management": a bulk write invalidates (after its commit), then the
    # popular queries are warmed again before anyone asks for them.
    created = await repo.bulk_create(
        [{"name": f"Cached {i}", "email": f"cached{i}@example.com"} for i in range(10)]
    )
    should_warm = cache_config.should_warm_cache()
    report = await repo.warm_cache()
    out.say(
        f"bulk_create of {created.success_count} users invalidated the model's entries; "
        f"should_warm_cache(): {should_warm}"
    )
    out.say(
        f"warm_cache(): {report.warmed} queries warmed, {report.already_cached} already "
        f"cached, {report.failed} failed, in {report.duration_seconds * 1000:.1f} ms"
    )
    after_warm_kind, _ = await served(guide_query)
    out.say(
        f"The guide's query after warming: {after_warm_kind}; should_warm_cache() now: "
        f"{cache_config.should_warm_cache()}"
    )

    # invalidate_cache(pattern) deletes the matching entries and then moves the generation
    # (deleting alone would let a reader that read the old rows store them right after), so
    # the kept count entry is retired too: refreshed from the database on its next read.
    invalidated = await repo.invalidate_cache("list:*")
    list_kind, _ = await served(guide_query)
    count_kind, _ = await served(lambda: repo.count(is_active=True))
    await cache_config.settle()
    count_refreshed_kind, _ = await served(lambda: repo.count(is_active=True))
    out.say(
        f'invalidate_cache("list:*"): {invalidated} list entries deleted, generation moved; '
        f"next list(): {list_kind}, next count(): {count_kind} (its entry was kept but "
        f"retired, so it was read again), then count(): {count_refreshed_kind}"
    )

    final = stats()
    out.say(
        f"Stats: {final.hits} hits, {final.misses} misses, hit ratio {final.hit_ratio:.0%}; "
        f"{final.fills} fills, {final.stale_fills_rejected} stale fills refused, "
        f"{final.invalidations} invalidations, {final.backend_errors} backend errors, "
        f"breaker {final.breaker_state}"
    )
    return {
        "backend": backend,
        "key_prefix": cache_config.key_prefix,
        "cold": cold_kind,
        "cached": [kind for kind, _ in cached],
        "cold_seconds": round(cold_time, 6),
        "cached_seconds": round(cached_time, 6),
        "speedup": round(speedup, 1),
        "popular": len(popular_queries),
        "popular_uses": popular_uses,
        "tracked": tracked,
        "created": created.success_count,
        "should_warm": should_warm,
        "warmed": report.warmed,
        "already_cached": report.already_cached,
        "warm_failed": report.failed,
        "after_warm": after_warm_kind,
        "invalidated": invalidated,
        "list_after_invalidate": list_kind,
        "count_after_invalidate": count_kind,
        "count_refreshed": count_refreshed_kind,
        "hits": final.hits,
        "misses": final.misses,
        "hit_ratio": round(final.hit_ratio, 3),
        "fills": final.fills,
        "backend_errors": final.backend_errors,
    }


def _describe(spec: dict[str, Any] | None) -> str:
    if spec is None:
        return "?"
    shown = {k: v for k, v in spec.items() if v not in (None, False, {}) and k != "operation"}
    return ", ".join(f"{k}={v!r}" for k, v in shown.items())


def _print_summary(out: Reporter, summary: dict[str, Any]) -> None:
    perf, delete, update = summary["performance"], summary["delete"], summary["update"]
    errors, rollback, stream = summary["errors"], summary["rollback"], summary["progress"]
    cache = summary["cache"]
    out.section("Summary")
    out.table(
        f"{summary['database']}: done in {summary['seconds']:.1f}s",
        ("step", "outcome"),
        [
            ("basic bulk_create", f"{summary['basic']['created']} created"),
            (
                "advanced bulk_create",
                f"{summary['advanced']['created']} created, "
                f"{summary['advanced']['conflicts']} conflicts skipped, "
                f"{summary['advanced']['events']} events",
            ),
            (
                "individual vs bulk",
                f"{perf['rows']} rows: {perf['individual_seconds']:.2f}s vs "
                f"{perf['bulk_seconds']:.3f}s = {perf['speedup']}x",
            ),
            (
                "bulk_update",
                f"{update['basic']} / {update['complex']} / {update['conditional']} / "
                f"{update['admins']} rows (basic / complex / conditional / admins)",
            ),
            (
                "bulk_delete",
                f"{delete['soft']} soft, {delete['hard']} hard, {delete['cleanup']} purged",
            ),
            (
                "error handling",
                f"{errors['created']} created, {errors['failed']} failed, "
                f"{errors['retry_created']} recovered on retry",
            ),
            (
                "transaction rollback",
                f"rows {rollback['rows_before']} -> {rollback['rows_after']}, "
                f"{rollback['events']} events",
            ),
            (
                "streamed bulk_create",
                f"{stream['created']:,} rows at {stream['rows_per_second']:,} rows/s",
            ),
            (
                "query cache",
                f"{cache['backend']}: cold {cache['cold_seconds'] * 1000:.2f} ms vs cached "
                f"{cache['cached_seconds'] * 1000:.3f} ms = {cache['speedup']}x; "
                f"{cache['popular']} popular of {cache['tracked']} tracked; "
                f"{cache['warmed']} warmed; hit ratio {cache['hit_ratio']:.0%}",
            ),
        ],
    )


def _shorten(message: str, width: int) -> str:
    return message if len(message) <= width else message[: width - 3] + "..."
