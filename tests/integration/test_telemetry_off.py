"""Telemetry that is off costs nothing and changes nothing: each case runs in a fresh
interpreter (a tracer provider, once set, stays for the process), on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CALLS = """
import asyncio, json, sys
from baserepo import BaseRepository, create_engine
from tests.models import Base, User

async def calls(url):
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    from sqlalchemy.ext.asyncio import AsyncSession
    async with AsyncSession(engine, expire_on_commit=False) as session:
        repo = BaseRepository(User, session)
        rows = [{"name": f"n{i}", "email": f"n{i}@x.org"} for i in range(6)]
        rows[4]["email"] = rows[0]["email"]  # batch 3-5 is rolled back: a WARNING
        result = await repo.bulk_create(rows, batch_size=3)
        listed = await repo.list({"name__startswith": "n"})
    await engine.dispose()
    return result.success_count, result.error_count, len(listed)
"""


def _run(script: str, tmp_path: Path, before_import: str = "") -> tuple[dict[str, object], str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'off.db'}"
    program = before_import + _CALLS + textwrap.dedent(script)
    completed = subprocess.run(
        [sys.executable, "-c", program, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def test_with_no_tracer_provider_no_span_is_made_and_calls_work(tmp_path: Path) -> None:
    out, stderr = _run(
        """
        from opentelemetry import trace

        def refuse(*args, **kwargs):
            raise AssertionError("a span was started with no tracer provider set")

        # The API's stand-ins for "no provider": baserepo must not even start no-op spans.
        for tracer in (trace.ProxyTracer, trace.NoOpTracer):
            tracer.start_span = tracer.start_as_current_span = refuse
        before = asyncio.run(calls(sys.argv[1]))

        # Set a provider now: only what runs from here on is recorded.
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        spans_before = len(exporter.get_finished_spans())
        after = asyncio.run(calls(sys.argv[1].replace("off.db", "on.db")))
        names = sorted({s.name for s in exporter.get_finished_spans()})
        print(json.dumps({"before": before, "after": after, "spans_before": spans_before,
                          "names": names}))
        """,
        tmp_path,
    )
    assert out["before"] == out["after"] == [3, 3, 3]
    assert out["spans_before"] == 0
    assert out["names"] == ["baserepo.batch", "baserepo.bulk_create", "baserepo.list"]
    # The rolled-back batch's WARNING went nowhere: the library prints nothing itself.
    assert stderr == ""


def test_without_opentelemetry_nothing_is_imported_or_wrapped(tmp_path: Path) -> None:
    out, stderr = _run(
        """
        result = asyncio.run(calls(sys.argv[1]))
        from baserepo.metrics import register_prometheus
        try:
            register_prometheus()
        except ImportError as missing:
            hint = str(missing)
        print(json.dumps({
            "result": result,
            "wrapped": hasattr(BaseRepository.bulk_create, "__wrapped__"),
            "imported": [m for m in sys.modules if m.startswith("opentelemetry") and
                         sys.modules[m] is not None],
            "hint": hint,
        }))
        """,
        tmp_path,
        # As if opentelemetry-api and prometheus-client were not installed.
        before_import=(
            'import sys; sys.modules["opentelemetry"] = sys.modules["prometheus_client"] = None'
        ),
    )
    assert out["result"] == [3, 3, 3]
    assert out["wrapped"] is False
    assert out["imported"] == []
    assert out["hint"] == (
        "the Prometheus collector needs prometheus-client: pip install 'baserepo[prometheus]'"
    )
    assert stderr == ""
