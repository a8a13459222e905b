"""Tracing, metrics and logs of real calls on every database (docs/observability.md).

Spans and metrics are read with the OpenTelemetry SDK's in-memory exporter and reader, set as
the process's global providers once (the API allows one of each per process) behind a gate
that records only while a test asks for it. What happens with no provider at all, or without
OpenTelemetry installed, runs in a fresh interpreter (``test_telemetry_off.py``).
"""

from __future__ import annotations

import gc
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from sqlalchemy import Integer, text
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from baserepo import BaseRepository, CacheConfig
from baserepo._bulk import bulk_dialect_for
from baserepo._bulk.postgresql_asyncpg import AsyncpgPostgresqlDialect
from baserepo.exceptions import BulkOperationError, InvalidFilterError
from baserepo.metrics import register_prometheus
from tests.models import User
from tests.redis_servers import REDIS_URL

# -- capture ---------------------------------------------------------------------------------


class _Gate(SpanProcessor):
    """Passes spans on only while a test captures them: the rest of the suite runs with the
    provider set (the API allows one per process) without keeping its spans."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner
        self.open = False

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.open:
            self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.open:
            self.inner.on_end(span)


@dataclass
class Otel:
    exporter: InMemorySpanExporter
    gate: _Gate
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = self.exporter.get_finished_spans()
        return [s for s in found if name is None or s.name == name]

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The metric ``name``'s points by their attributes (sums, gauges: the value;
        histograms: the data point)."""
        data = self.reader.get_metrics_data()
        points: dict[frozenset[tuple[str, Any]], Any] = {}
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        points[key] = (
                            point if isinstance(point, HistogramDataPoint) else point.value
                        )
        return points


_OTEL: Otel | None = None


def _otel() -> Otel:
    global _OTEL
    if _OTEL is None:
        exporter = InMemorySpanExporter()
        gate = _Gate(SimpleSpanProcessor(exporter))
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(gate)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _OTEL = Otel(exporter, gate, reader)
    return _OTEL


@pytest.fixture
def otel() -> Iterator[Otel]:
    captured = _otel()
    captured.exporter.clear()
    captured.gate.open = True
    try:
        yield captured
    finally:
        captured.gate.open = False
        captured.exporter.clear()


def user(i: int, tag: str = "t") -> dict[str, Any]:
    return {"name": f"{tag}{i}", "email": f"{tag}{i}@x.org", "department": "eng"}


def attrs(**values: Any) -> frozenset[tuple[str, Any]]:
    return frozenset({f"baserepo.{k}": v for k, v in values.items()}.items())


def db_system(engine: AsyncEngine) -> str:
    dialect = engine.dialect
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name


def copies(engine: AsyncEngine) -> bool:
    """PostgreSQL through asyncpg writes bulk_create batches by COPY."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"


# -- bulk_create ----------------------------------------------------------------------------


async def test_bulk_create_gives_a_span_per_call_and_per_batch_and_counts_its_records(
    otel: Otel, engine: AsyncEngine, session: AsyncSession
) -> None:
    created = attrs(operation="bulk_create", model="User", outcome="created")
    before = otel.points("baserepo.bulk.records").get(created, 0)
    durations = otel.points("baserepo.bulk.batch.duration")
    batch_key = attrs(operation="bulk_create", model="User", outcome="committed")
    batches_before = durations[batch_key].count if batch_key in durations else 0

    result = await BaseRepository(User, session).bulk_create(
        [user(i) for i in range(25)], batch_size=10
    )
    assert result.success_count == 25

    [call] = otel.spans("baserepo.bulk_create")
    assert dict(call.attributes or {}) == {
        "db.system": db_system(engine),
        "baserepo.model": "User",
        "baserepo.records": 25,
        "baserepo.batches": 3,
        "baserepo.success_count": 25,
        "baserepo.error_count": 0,
    }
    assert call.status.status_code is StatusCode.UNSET
    batches = otel.spans("baserepo.batch")
    assert [b.attributes["baserepo.rows"] for b in batches] == [10, 10, 5]  # type: ignore[index]
    assert all(b.parent is not None and b.parent.span_id == call.context.span_id for b in batches)
    strategies = {b.attributes["baserepo.strategy"] for b in batches}  # type: ignore[index]
    assert strategies == ({"copy"} if copies(engine) else strategies - {"none"})
    assert strategies

    # The COPY, which no SQLAlchemy or asyncpg instrumentation sees, with what it wrote.
    copy_spans = otel.spans("baserepo.copy")
    if copies(engine):
        assert [s.attributes["baserepo.rows"] for s in copy_spans] == [10, 10, 5]  # type: ignore[index]
        batch_ids = [b.context.span_id for b in batches]
        assert [s.parent.span_id for s in copy_spans] == batch_ids  # type: ignore[union-attr]
        assert {s.attributes["db.sql.table"] for s in copy_spans} == {"users"}  # type: ignore[index]
    else:
        assert copy_spans == []

    assert otel.points("baserepo.bulk.records")[created] - before == 25
    assert otel.points("baserepo.bulk.batch.duration")[batch_key].count - batches_before == 3


async def test_bulk_upserts_copy_into_its_staging_table_shows_as_a_span_with_its_rows(
    otel: Otel, engine: AsyncEngine, session: AsyncSession
) -> None:
    if not copies(engine):
        pytest.skip("the staging table is COPY's, which only asyncpg has")
    bulk = bulk_dialect_for(engine.sync_engine.dialect)
    assert isinstance(bulk, AsyncpgPostgresqlDialect)
    bulk.stage_min_rows = 1  # this engine is the test's own
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i) for i in range(4)])
    otel.exporter.clear()

    result = await repo.bulk_upsert(
        [{**user(i), "salary": 40} for i in range(10)], unique_fields=["email"]
    )
    assert (len(result.updated_ids), len(result.created_ids)) == (4, 6)

    [batch] = otel.spans("baserepo.batch")
    assert batch.attributes["baserepo.strategy"] == "stage_copy"  # type: ignore[index]
    [copy] = otel.spans("baserepo.copy")
    assert copy.attributes["baserepo.rows"] == 10  # type: ignore[index]
    assert copy.attributes["db.sql.table"] != "users"  # type: ignore[index]  # the stage
    assert copy.parent is not None
    assert copy.parent.span_id == batch.context.span_id


async def test_a_rolled_back_batch_warns_with_its_culprit_and_marks_its_span(
    otel: Otel, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [user(i) for i in range(30)]
    rows[13]["email"] = rows[2]["email"]  # batch 10-19 breaks the unique email
    failed = otel.points("baserepo.bulk.records")
    with caplog.at_level(logging.WARNING, logger="baserepo"):
        result = await BaseRepository(User, session).bulk_create(rows, batch_size=10)
    assert (result.success_count, result.error_count) == (20, 10)

    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "baserepo.bulk"
    message = warning.getMessage()
    assert message.startswith("bulk_create User: batch of records 10-19 rolled back, record 13")
    assert "unique" in message.lower()

    [call] = otel.spans("baserepo.bulk_create")
    assert call.attributes["baserepo.error_count"] == 10  # type: ignore[index]
    second = otel.spans("baserepo.batch")[1]
    assert second.status.status_code is StatusCode.ERROR
    assert second.attributes["baserepo.outcome"] == "rolled_back"  # type: ignore[index]
    [rolled] = [e for e in second.events if e.name == "batch.rolled_back"]
    assert rolled.attributes["baserepo.culprit"] == 13  # type: ignore[index]

    after = otel.points("baserepo.bulk.records")
    gained = {
        key: value - failed.get(key, 0)
        for key, value in after.items()
        if ("baserepo.outcome", "failed") in key and value != failed.get(key, 0)
    }
    assert gained == {
        attrs(operation="bulk_create", model="User", outcome="failed", failure_kind="integrity"): 1,
        attrs(
            operation="bulk_create",
            model="User",
            outcome="failed",
            failure_kind="batch_rolled_back",
        ): 9,
    }


async def test_every_batch_gets_a_debug_line(
    session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="baserepo.bulk"):
        await BaseRepository(User, session).bulk_create([user(i) for i in range(5)], batch_size=2)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert [line.split(" by ")[0] for line in lines] == [
        "bulk_create User: batch 1, 2 rows",
        "bulk_create User: batch 2, 2 rows",
        "bulk_create User: batch 3, 1 rows",
    ]
    assert all(line.endswith("ms (committed)") and "by none" not in line for line in lines)


# -- other calls ------------------------------------------------------------------------------


async def test_bulk_update_and_delete_count_their_rows_by_outcome(
    otel: Otel, session: AsyncSession
) -> None:
    repo = BaseRepository(User, session)
    await repo.bulk_create([user(i) for i in range(12)])
    updated = attrs(operation="bulk_update", model="User", outcome="updated")
    deleted = attrs(operation="bulk_delete", model="User", outcome="deleted")
    before = otel.points("baserepo.bulk.records")

    changed = await repo.bulk_update({"name__startswith": "t"}, {"salary": 5}, batch_size=5)
    gone = await repo.bulk_delete({"salary": 5}, soft_delete=False, batch_size=5)
    assert (changed.success_count, gone.success_count) == (12, 12)

    after = otel.points("baserepo.bulk.records")
    assert after[updated] - before.get(updated, 0) == 12
    assert after[deleted] - before.get(deleted, 0) == 12
    [update_call] = otel.spans("baserepo.bulk_update")
    assert update_call.attributes["baserepo.success_count"] == 12  # type: ignore[index]
    assert update_call.attributes["baserepo.batches"] >= 3  # type: ignore[index,operator]


async def test_a_call_that_raises_records_the_exception_and_sets_error_status(
    otel: Otel, session: AsyncSession
) -> None:
    with pytest.raises(InvalidFilterError):
        await BaseRepository(User, session).list({"no_such_field": 1})
    [call] = otel.spans("baserepo.list")
    assert call.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in call.events] == [  # type: ignore[index]
        "baserepo.exceptions.InvalidFilterError"
    ]


# -- the cache --------------------------------------------------------------------------------


@pytest.fixture
async def redis_cache() -> AsyncIterator[CacheConfig]:
    client = Redis.from_url(REDIS_URL)
    prefix = f"telemetry-{uuid.uuid4().hex[:8]}"
    try:
        yield CacheConfig(redis_client=client, key_prefix=prefix)
    finally:
        async for key in client.scan_iter(f"{prefix}*"):
            await client.unlink(key)
        await client.aclose()


async def test_a_cached_list_shows_its_miss_fill_and_hit(
    otel: Otel, engine: AsyncEngine, session: AsyncSession, redis_cache: CacheConfig
) -> None:
    repo = BaseRepository(User, session, redis_cache)
    await repo.bulk_create([user(i) for i in range(5)])
    await session.commit()
    model = attrs(model="User")
    counts = {
        name: otel.points(f"baserepo.cache.{name}").get(model, 0)
        for name in ("hits", "misses", "fills")
    }
    otel.exporter.clear()

    first = await repo.list({"department": "eng"})
    await session.commit()
    await redis_cache.settle()  # the fill runs after the call returns
    second = await repo.list({"department": "eng"})
    assert [u.id for u in second] == [u.id for u in first]

    miss, hit = otel.spans("baserepo.list")
    assert [e.name for e in miss.events] == ["cache.miss"]
    assert [e.name for e in hit.events] == ["cache.hit"]
    assert hit.attributes["db.system"] == db_system(engine)  # type: ignore[index]
    [fill] = otel.spans("baserepo.cache.fill")
    assert fill.parent is not None
    assert fill.parent.span_id == miss.context.span_id
    assert fill.attributes["baserepo.cache.fill"] == "stored"  # type: ignore[index]

    after = {name: otel.points(f"baserepo.cache.{name}")[model] for name in counts}
    assert {name: after[name] - counts[name] for name in counts} == {
        "hits": 1,
        "misses": 1,
        "fills": 1,
    }
    breaker = otel.points("baserepo.cache.breaker.state")
    assert breaker[frozenset({("baserepo.cache.backend", "RedisBackend")})] == 0


# -- Prometheus ------------------------------------------------------------------------------


async def test_the_prometheus_collector_reads_the_same_counters(
    session: AsyncSession, redis_cache: CacheConfig
) -> None:
    registry = CollectorRegistry()
    register_prometheus(registry)

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    created = {"model": "User", "operation": "bulk_create", "outcome": "created", "kind": ""}
    conflict = {**created, "outcome": "failed", "kind": "integrity"}
    before = {
        "created": sample("baserepo_bulk_records_total", **created),
        "conflict": sample("baserepo_bulk_records_total", **conflict),
        "batches": sample(
            "baserepo_bulk_batch_duration_seconds_count", model="User", operation="bulk_create"
        ),
        "hits": sample("baserepo_cache_hits_total", model="User"),
    }
    repo = BaseRepository(User, session, redis_cache)
    rows = [user(i, "p") for i in range(8)]
    rows[5]["email"] = rows[1]["email"]
    await repo.bulk_create(rows, batch_size=4)  # batch 4-7 rolled back: 4 created
    await session.commit()
    await repo.list({"department": "eng"})
    await session.commit()
    await redis_cache.settle()
    await repo.list({"department": "eng"})

    assert sample("baserepo_bulk_records_total", **created) - before["created"] == 4
    assert sample("baserepo_bulk_records_total", **conflict) - before["conflict"] == 1
    batches = sample(
        "baserepo_bulk_batch_duration_seconds_count", model="User", operation="bulk_create"
    )
    assert batches - before["batches"] == 2
    inf = sample(
        "baserepo_bulk_batch_duration_seconds_bucket",
        model="User",
        operation="bulk_create",
        le="+Inf",
    )
    assert inf == batches
    assert sample("baserepo_cache_hits_total", model="User") - before["hits"] == 1
    assert (
        registry.get_sample_value("baserepo_cache_breaker_state", {"backend": "RedisBackend"}) == 0
    )


# -- MariaDB's warnings ----------------------------------------------------------------------


class _WarnBase(DeclarativeBase):
    pass


class Label(_WarnBase):
    """A latin1 column: what it cannot hold, MariaDB's non-strict mode stores as ``?`` with a
    warning (a limit of the server's, not of the column type baserepo checks)."""

    __tablename__ = "telemetry_labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(mysql.VARCHAR(20, charset="latin1"))


async def test_mariadb_warnings_are_summarised_once_per_batch(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    if engine.dialect.name != "mysql":
        pytest.skip("server warnings on INSERT are MariaDB's (asyncmy logs each one)")
    async with engine.begin() as conn:
        await conn.run_sync(_WarnBase.metadata.drop_all)
        await conn.run_sync(_WarnBase.metadata.create_all)
    try:
        async with AsyncSession(engine) as session, session.begin():
            # Inside the transaction: its connection, and only it, is non-strict.
            await session.execute(text("SET SESSION sql_mode = ''"))
            with caplog.at_level(logging.DEBUG):
                result = await BaseRepository(Label, session).bulk_create(
                    [{"text": f"日本 {i}"} for i in range(6)], batch_size=3
                )
            await session.execute(text("SET SESSION sql_mode = DEFAULT"))
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_WarnBase.metadata.drop_all)
    assert result.success_count == 6
    assert [r for r in caplog.records if r.name.startswith("asyncmy")] == []
    summaries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(summaries) == 2, summaries
    column = f"`{engine.url.database}`.`telemetry_labels`.`text`"
    assert (
        summaries
        == [
            "INSERT into telemetry_labels: the server warned 3 times for 3 rows: Incorrect string "
            f"value: '\\xE6\\x97\\xA5\\xE6\\x9C\\xAC...' for column {column} (3 rows)"
        ]
        * 2
    )


async def test_cache_counters_never_go_back_when_a_cache_config_is_collected(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    registry = CollectorRegistry()
    register_prometheus(registry)

    def hits() -> float:
        return registry.get_sample_value("baserepo_cache_hits_total", {"model": "User"}) or 0.0

    async def miss_then_hit(config: CacheConfig) -> None:
        # In a function of its own: the session (which holds the cache) ends with it.
        async with session_factory() as session:
            repo = BaseRepository(User, session, config)
            await repo.list({"department": "eng"})
            await session.commit()
            await config.settle()
            await repo.list({"department": "eng"})

    before = hits()
    config = CacheConfig(key_prefix=f"gc-{uuid.uuid4().hex[:8]}")
    await miss_then_hit(config)
    assert hits() - before == 1
    collected = weakref.ref(config.runtime)
    del config
    gc.collect()
    assert collected() is None  # the config and its counters are gone...
    assert hits() - before == 1  # ...and what they counted stays


async def test_a_call_that_stops_midway_counts_every_record_and_errs_its_span(
    otel: Otel, session: AsyncSession
) -> None:
    def records() -> Iterator[dict[str, Any]]:
        for i in range(15):
            yield user(i, "s")
        raise RuntimeError("the input broke")

    created = attrs(operation="bulk_create", model="User", outcome="created")
    skipped = attrs(
        operation="bulk_create", model="User", outcome="failed", failure_kind="not_attempted"
    )
    before = otel.points("baserepo.bulk.records")
    with pytest.raises(BulkOperationError) as stopped:
        await BaseRepository(User, session).bulk_create(records(), batch_size=10)
    assert (stopped.value.result.success_count, stopped.value.result.error_count) == (10, 5)

    after = otel.points("baserepo.bulk.records")
    assert after[created] - before.get(created, 0) == 10
    assert after[skipped] - before.get(skipped, 0) == 5
    [call] = otel.spans("baserepo.bulk_create")
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes["baserepo.success_count"], call.attributes["baserepo.error_count"]) == (  # type: ignore[index]
        10,
        5,
    )
    assert call.attributes["baserepo.batches"] == 1  # type: ignore[index]
