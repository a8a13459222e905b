"""Smoke test of ``baserepo demo`` on every database, with its cache step on the in-process
backend and on the shared Redis: it runs, and every step did what it says.

The demo owns its database (``baserepo_demo`` on the servers, a temporary SQLite file here), so
this test does not use the shared ``db_url`` fixture. Expected counts are recomputed in plain
Python from the demo's own staff records, independently of the database. On Redis the demo works
under a key prefix of its own run and deletes its keys; the test checks that none is left.
"""

import math
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from baserepo import cli, demo
from baserepo.demo import GUIDE_USERS, population, utcnow
from tests.redis_servers import REDIS_URL, free_port

DEMO_URLS = {
    "sqlite": "",  # a file under the test's tmp_path
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/baserepo_demo",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/baserepo_demo?charset=utf8mb4",
}
ROWS = 300
"""Small enough to run in a few seconds; also the staff size (``min(rows, 1000)``)."""


def _requested() -> list[str]:
    # The same switch as tests/conftest.py, so a SQLite-only run needs no servers.
    raw = os.environ.get("BASEREPO_TEST_DATABASES", ",".join(DEMO_URLS))
    return [name.strip().lower() for name in raw.split(",") if name.strip() in DEMO_URLS]


class RecordingReporter:
    """Keeps the narration instead of printing it."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.lines: list[str] = []
        self.progress_updates: list[int] = []

    def section(self, title: str) -> None:
        self.sections.append(title)

    def say(self, message: str) -> None:
        self.lines.append(message)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.lines.append(title)
        self.lines.extend(" ".join(str(cell) for cell in row) for row in rows)

    def progress(self, description: str, total: int) -> Any:
        from contextlib import nullcontext

        return nullcontext(self.progress_updates.append)


def _expected(rows: int) -> dict[str, int]:
    """What each update/delete step must touch, from the staff records alone."""
    now = utcnow()
    old_login = now - timedelta(days=90)
    live = [r for r in population(min(rows, demo.POPULATION_LIMIT), now) if not r.get("deleted_at")]

    def active(r: dict[str, Any]) -> bool:
        return bool(r.get("is_active", True))

    def long_gone(r: dict[str, Any]) -> bool:
        return r.get("last_login") is not None and r["last_login"] < old_login

    deactivated = [r for r in live if not active(r) or long_gone(r)]
    kept = [r for r in live if r not in deactivated]
    test_data = [
        r
        for r in kept
        if r["email"].startswith("test_") and r["created_at"] < now - timedelta(days=30)
    ]
    return {
        "live": len(live),
        "basic": sum(r.get("department") == "engineering" for r in live),
        "complex": sum(
            r.get("salary", 10**9) < 50_000
            and r.get("department") in ("sales", "marketing")
            and active(r)
            for r in live
        ),
        "conditional": sum(active(r) and long_gone(r) for r in live),
        "admins": sum(r.get("role") == "admin" for r in live),
        "soft": len(deactivated),
        "hard": len(test_data),
        "decoys": sum(r["email"].startswith("tester") for r in live),
        "cleanup": min(rows, demo.POPULATION_LIMIT) - len(live),
    }


@pytest.fixture(params=[name for name in DEMO_URLS if name in _requested()])
def demo_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"
    return DEMO_URLS[request.param]


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> str:
    """The cache step's backend: in-process (the demo's default) or the shared Redis."""
    return str(request.param)


async def _keys_under(prefix: str) -> list[bytes]:
    client = Redis.from_url(REDIS_URL)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}:*")]
    finally:
        await client.aclose()


async def test_demo_runs_every_step_of_the_guide(demo_url: str, cache: str) -> None:
    reporter = RecordingReporter()
    redis_url = REDIS_URL if cache == "redis" else None
    summary = await demo.main(demo_url, rows=ROWS, reporter=reporter, redis_url=redis_url)
    expected = _expected(ROWS)
    staff = min(ROWS, demo.POPULATION_LIMIT)

    assert summary["database"] in ("sqlite", "postgresql", "mariadb")
    assert [title.split(".")[0] for title in reporter.sections[1:]] == [
        *"123456789",
        "10",
        "Summary",
    ]

    basic = summary["basic"]
    assert basic["created"] == len(GUIDE_USERS)
    assert basic["errors"] == 0
    assert len(set(basic["ids"])) == len(GUIDE_USERS)

    advanced = summary["advanced"]
    assert advanced["population"] == staff
    assert advanced["input"] == staff + 5
    assert advanced["created"] == staff
    assert advanced["conflicts"] == 5
    assert advanced["conflict_indexes"] == list(range(staff, staff + 5))
    assert advanced["event_rows"] == staff
    assert 1 <= advanced["events"] <= math.ceil(staff / 100)

    perf = summary["performance"]
    assert perf["rows"] == staff
    assert perf["individual_created"] == staff
    assert perf["bulk_created"] == staff
    assert perf["individual_seconds"] > 0
    assert perf["bulk_seconds"] > 0
    assert perf["speedup"] > 2, perf

    update = summary["update"]
    assert update["basic"] == expected["basic"] > 0
    assert update["complex"] == expected["complex"] > 0
    assert update["complex_event_rows"] == update["complex"]
    assert update["complex_events"] == math.ceil(update["complex"] / 50)
    assert update["conditional"] == expected["conditional"] > 0
    assert update["conditional_left"] == 0
    assert update["admins"] == expected["admins"] > 0

    delete = summary["delete"]
    assert delete["soft"] == expected["soft"] > 0
    assert delete["soft_event_rows"] == delete["soft"]
    assert delete["hard"] == expected["hard"] > 0
    assert delete["decoys_before"] == delete["decoys_kept"] == expected["decoys"] > 0
    assert delete["cleanup"] == expected["cleanup"] > 0

    errors = summary["errors"]
    assert errors["input"] == 12
    assert errors["created"] == 2
    assert errors["failed"] == 10
    assert errors["failures"] == [
        (1, "validation"),
        (3, "validation"),
        (4, "batch_rolled_back"),
        (5, "integrity"),
        (6, "batch_rolled_back"),
        (7, "validation"),
        (8, "batch_rolled_back"),
        (9, "integrity"),
        (10, "batch_rolled_back"),
        (11, "batch_rolled_back"),
    ]
    assert errors["retried"] == errors["retry_created"] == 5

    rollback = summary["rollback"]
    assert rollback["rolled_back"] is True
    assert rollback["created_inside"] == 50 + 40
    assert rollback["failed_inside"] == 10
    assert rollback["rows_after"] == rollback["rows_before"]
    assert rollback["events"] == 0

    stream = summary["progress"]
    assert stream["rows"] == stream["created"] == ROWS
    assert stream["errors"] == 0
    assert stream["progress_last"] == ROWS
    assert stream["progress_monotonic"] is True
    assert reporter.progress_updates[-1] == ROWS

    cached = summary["cache"]
    assert cached["backend"] == cache
    # The guide's cold vs cached list(limit=100, is_active=True): a miss, then hits only.
    assert cached["cold"] == "miss"
    assert cached["cached"] == ["hit"] * demo.CACHED_READS
    assert cached["cold_seconds"] > cached["cached_seconds"] > 0
    assert cached["speedup"] > 1
    # Popular queries: the guide's list and count(is_active=True) 6 uses, the sales list 5;
    # get() 3 and the qa list 2, under min_usage_count=5, are tracked but not popular.
    assert cached["popular"] == 3
    assert cached["popular_uses"] == [("count", 6), ("list", 5), ("list", 6)]
    assert cached["tracked"] == 5
    # bulk_create invalidated them; warm_cache() ran all three popular queries again.
    assert cached["created"] == 10
    assert cached["should_warm"] is True
    assert (cached["warmed"], cached["already_cached"], cached["warm_failed"]) == (3, 0, 0)
    assert cached["after_warm"] == "hit"
    # invalidate_cache("list:*") deletes the three list entries, and only those, then moves
    # the generation: the kept count entry is retired too, read again from the database
    # (and filled), then served from the cache.
    assert cached["invalidated"] == 3
    assert cached["list_after_invalidate"] == "miss"
    assert cached["count_after_invalidate"] == "miss"
    assert cached["count_refreshed"] == "hit"
    # 19 reads were hits; 5 first reads, 2 reads after invalidate_cache and the 3 warming
    # replays were misses, and each of them filled.
    assert (cached["hits"], cached["misses"]) == (19, 10)
    assert cached["hit_ratio"] == round(19 / 29, 3)
    assert cached["fills"] == 10
    assert cached["backend_errors"] == 0
    assert cached["key_prefix"].startswith(f"{demo.CACHE_KEY_PREFIX}-")
    if redis_url:
        assert await _keys_under(cached["key_prefix"]) == []  # the demo deleted its keys

    upserted = summary["upsert"]
    assert upserted["first_created"] == 3
    assert (upserted["created"], upserted["updated"], upserted["unchanged"]) == (1, 1, 2)
    assert upserted["failures"] == [(3, "duplicate")]
    assert (upserted["created_event_rows"], upserted["updated_event_rows"]) == (1, 1)
    assert upserted["dee_salary"] == 52_000

    visible = (
        len(GUIDE_USERS)
        + expected["live"]
        - expected["soft"]
        - expected["hard"]
        + 2 * staff
        + errors["created"]
        + errors["retry_created"]
        + ROWS
        + cached["created"]
        + upserted["first_created"]
        + upserted["created"]
    )
    assert summary["final"] == {"visible": visible, "soft_deleted": expected["soft"]}
    assert summary["seconds"] < 30


@pytest.mark.parametrize("source", ["option", "environment"])
def test_demo_stops_at_once_when_its_redis_is_unreachable(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Checked before any step runs, and reported without a traceback or the password.
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    args = ["demo", "--plain", "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"]
    if source == "option":
        args += ["--redis-url", url]
    else:
        monkeypatch.setenv("BASEREPO_REDIS_URL", url)
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert "Redis unreachable at redis://:***@127.0.0.1:" in err
    assert "hunter2" not in err + out
    assert "1. bulk_create" not in out
