"""The tour itself: run every step on a fresh ``demo_users`` table, in the guide's order, and
print the summary.

Each step calls the repository exactly as the guide does, prints what happened and adds its
figures to the summary that :func:`main` returns (the smoke test asserts on it). The demo owns
its database: it drops and recreates its one table at start, so it can be run again and again.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from baserepo import EventBus, create_engine
from baserepo.cache.connect import connect_redis
from baserepo.testing import ensure_database

from ._cache_step import query_cache
from ._change_steps import deletes, updates
from ._create_steps import advanced_create, basic_create, long_stream, performance
from ._events import EventCounter
from ._failure_steps import error_handling, transaction_rollback
from ._model import Base, User, UserRepository
from ._reporters import PlainReporter
from ._settings import DEFAULT_ROWS, MIN_ROWS, POPULATION_LIMIT, default_database_url, redact
from ._upsert_step import upsert

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._reporters import Reporter

__all__ = ["main"]


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
            cache_client = await connect_redis(redis_url)
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
            out.say(f"database: {redact(url)}")
            summary: dict[str, Any] = {"database": database, "rows": rows}
            summary["basic"] = await basic_create(repo, out)
            summary["advanced"] = await advanced_create(repo, out, counter, rows)
            summary["performance"] = await performance(repo, out, min(rows, POPULATION_LIMIT))
            summary["update"] = await updates(repo, out, counter)
            summary["delete"] = await deletes(repo, out, counter)
            summary["errors"] = await error_handling(repo, out)
            summary["rollback"] = await transaction_rollback(session, repo, out, counter)
            summary["progress"] = await long_stream(repo, out, rows)
            summary["cache"] = await query_cache(session, out, bus, cache_client, redis_url)
            summary["upsert"] = await upsert(repo, out, counter)
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
            (
                "bulk_upsert",
                f"{summary['upsert']['created']} created, {summary['upsert']['updated']} "
                f"updated, {summary['upsert']['unchanged']} unchanged",
            ),
        ],
    )
