"""A driver or client library that is not installed is reported with the extra that installs
it, as a ``MissingDependencyError`` (a ``ConfigurationError`` and an ``ImportError``), not as
SQLAlchemy's or redis-py's bare ``ModuleNotFoundError`` from deep inside an import.

Each test runs a subprocess of this virtualenv's Python with the library made unimportable
(``tests/packaging/blocked.py``); the services are never contacted: the error comes first.
"""

import os
from pathlib import Path

import pytest

from tests.packaging.blocked import run_cli_without, run_without

# (URL, the module its driver is, the extra that installs it)
DRIVERS = [
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/app", "asyncpg", "postgres"),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/app", "psycopg", "psycopg"),
    ("mysql+asyncmy://root@127.0.0.1:3306/app", "asyncmy", "mysql"),
]

REPORT = """
import baserepo
try:
    {call}
except baserepo.MissingDependencyError as error:
    assert isinstance(error, ImportError) and isinstance(error, baserepo.ConfigurationError)
    assert isinstance(error.__cause__, ModuleNotFoundError)
    print(f"name={{error.name}} extra={{error.extra}} message={{error}}")
else:
    print("no error")
"""


def _report(blocked: str, call: str) -> str:
    done = run_without([blocked], REPORT.format(call=call))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(("url", "module", "extra"), DRIVERS)
def test_create_engine_names_the_extra_of_a_missing_driver(
    url: str, module: str, extra: str
) -> None:
    driver = url.partition(":")[0]
    assert _report(module, f"baserepo.create_engine({url!r})") == (
        f"name={module} extra={extra} message={driver} needs {module}, which is not "
        f"installed: pip install 'baserepo[{extra}]'"
    )


@pytest.mark.parametrize(("url", "module", "extra"), DRIVERS)
def test_the_demo_reports_a_missing_driver_without_a_traceback(
    url: str, module: str, extra: str
) -> None:
    # The demo creates the database first (baserepo.testing.ensure_database): that engine
    # reports the missing driver too, before any connection is tried.
    done = run_cli_without([module], ["demo", "--plain", "--database-url", url])
    assert done.returncode == 1
    assert f"pip install 'baserepo[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_core_dependency_says_to_reinstall() -> None:
    # aiosqlite is a requirement of baserepo: missing only from a broken install.
    assert _report("aiosqlite", "baserepo.create_engine('sqlite+aiosqlite:///:memory:')") == (
        "name=aiosqlite extra=None message=sqlite+aiosqlite needs aiosqlite, which is not "
        "installed: baserepo requires it: reinstall baserepo, or pip install aiosqlite"
    )


def test_a_redis_cache_without_redis_py_names_the_extra() -> None:
    assert _report("redis", "baserepo.CacheConfig(redis_client=object())") == (
        "name=redis extra=redis message=a Redis cache (redis_client=) needs redis, which is "
        "not installed: pip install 'baserepo[redis]'"
    )


def test_connect_redis_without_redis_py_names_the_extra() -> None:
    call = (
        "import asyncio; from baserepo.cache.connect import connect_redis; "
        "asyncio.run(connect_redis('redis://127.0.0.1:6379/0'))"
    )
    assert _report("redis", call) == (
        "name=redis extra=redis message=a Redis URL needs redis, which is not installed: "
        "pip install 'baserepo[redis]'"
    )


def test_baserepo_imports_without_any_optional_library() -> None:
    # The package itself must import (and run on SQLite in-process) with no extra installed.
    code = "import baserepo, baserepo.cache, baserepo.testing, baserepo.cli\nprint('ok')"
    done = run_without(["asyncpg", "psycopg", "asyncmy", "redis", "hiredis", "rich"], code)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


def test_the_demo_runs_in_plain_text_without_rich(tmp_path: Path) -> None:
    # rich is the cli extra; without it the demo narrates with print instead of failing.
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEREPO_")}
    done = run_cli_without(["rich"], ["demo", "--rows", "100", "--database-url", url], env=env)
    assert done.returncode == 0, done.stderr
    assert "\n== baserepo demo on sqlite" in done.stdout
    assert "1. bulk_create" in done.stdout
