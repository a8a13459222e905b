"""Rules of the package's shape, read from the source with ``ast`` (nothing is imported to
check them but the public modules the demo names).

- The demo (``baserepo.demo``) is an application of the library: it imports only public
  names (a module path without a ``_`` part, a name in that module's ``__all__``), and no
  module of the library imports it except the ``baserepo`` command (``cli/``, which runs it
  and borrows its reporters).
- Each optional client library is imported by one module: redis-py by the Redis backend,
  rich by the demo's reporters, OpenTelemetry and prometheus_client by their telemetry
  modules; no module imports a database driver.
- No module is longer than 600 lines.
- The package has no import cycle, counting imports made for type checking only and imports
  inside functions (``import_graph``).
"""

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.import_graph import cycles, package_graph

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "baserepo"
MAX_LINES = 600
OVER_LIMIT: dict[str, int] = {}
"""Modules allowed over the limit, with the length they may not exceed (none now); an entry
must go once its module is under."""
ONLY_IMPORTER = {
    "redis": "cache/_redis.py",
    "rich": "demo/_reporters.py",
    "opentelemetry": "_telemetry/_otel.py",
    "prometheus_client": "_telemetry/prometheus.py",
}
NEVER_IMPORTED = ("asyncpg", "aiosqlite", "asyncmy", "psycopg", "pymysql")
"""Database drivers: the library reaches them through SQLAlchemy (the COPY path through the
connection SQLAlchemy hands out), so no module imports one and any driver of a dialect works."""


def _modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _dotted(path: Path) -> str:
    parts = ["baserepo", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(absolute module, names imported from it) for every import of ``path``, wherever it
    is (function bodies and ``TYPE_CHECKING`` blocks included)."""
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, module]) if module else ".".join(base)
            yield module, [alias.name for alias in node.names]


def test_the_demo_imports_only_public_names_of_baserepo() -> None:
    private: list[str] = []
    for path in _modules(PACKAGE / "demo"):
        for module, names in _imports(path):
            if module == "baserepo.demo" or module.startswith("baserepo.demo."):
                continue  # the demo's own modules
            if module != "baserepo" and not module.startswith("baserepo."):
                continue
            where = f"{_name(path)}: {module}"
            if any(part.startswith("_") for part in module.split(".")):
                private.append(f"{where} (private module)")
                continue
            exported = set(importlib.import_module(module).__all__)
            private.extend(f"{where}.{name}" for name in names if name not in exported)
    assert private == []


def test_only_the_command_imports_the_demo() -> None:
    importers = {
        _name(path)
        for path in _modules()
        if not _name(path).startswith("demo/")
        for module, names in _imports(path)
        if module.startswith("baserepo.demo") or (module == "baserepo" and "demo" in names)
    }
    assert importers == {"cli/demo.py", "cli/cache.py", "cli/_cache_output.py"}


@pytest.mark.parametrize(("library", "module"), ONLY_IMPORTER.items())
def test_a_client_library_is_imported_by_one_module(library: str, module: str) -> None:
    assert _importers(library) == {module}


def _importers(library: str) -> set[str]:
    return {
        _name(path)
        for path in _modules()
        for imported, _ in _imports(path)
        if imported.split(".")[0] == library
    }


@pytest.mark.parametrize("library", NEVER_IMPORTED)
def test_no_module_imports_a_database_driver(library: str) -> None:
    assert _importers(library) == set()


def test_no_module_is_longer_than_600_lines() -> None:
    lengths = {_name(path): len(path.read_text().splitlines()) for path in _modules()}
    too_long = {
        name: lines for name, lines in lengths.items() if lines > OVER_LIMIT.get(name, MAX_LINES)
    }
    assert too_long == {}
    settled = [name for name, limit in OVER_LIMIT.items() if lengths.get(name, 0) <= MAX_LINES]
    assert settled == [], "under the limit now: remove from OVER_LIMIT"


def test_the_package_has_no_import_cycle() -> None:
    graph = package_graph(PACKAGE, "baserepo")
    assert "baserepo._repository" in graph["baserepo"]  # the walk resolved relative imports
    assert cycles(graph) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
