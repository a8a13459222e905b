"""The shape of ``baserepo.cache``: its public names kept, no import cycle (counting imports
made only for type checking and imports inside functions), the state modules never importing
the settings, and redis imported by ``_redis.py`` alone. Read from the source: no database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import baserepo.cache
import baserepo.cache.config

CACHE_DIR = Path(baserepo.cache.__file__).parent
PACKAGE = "baserepo.cache"
MODULES = sorted(path.stem for path in CACHE_DIR.glob("*.py"))
STATE_MODULES = ("_guard", "_runtime", "_stats", "_usage")
"""The running cache: none of them may import the settings (``config``)."""


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, absolute, wherever the import statement is."""
    tree = ast.parse((CACHE_DIR / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = PACKAGE.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        name = PACKAGE if module == "__init__" else f"{PACKAGE}.{module}"
        graph[name] = set()
        for target in _imports(module):
            if target.startswith(f"{PACKAGE}.") and target.rpartition(".")[2] in MODULES:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_cache_package_has_no_import_cycle() -> None:
    graph = _graph()
    assert f"{PACKAGE}._reads" in graph  # the walk found the modules
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize("module", STATE_MODULES)
def test_state_modules_never_import_the_settings(module: str) -> None:
    assert f"{PACKAGE}.config" not in _imports(module)


@pytest.mark.parametrize("module", MODULES)
def test_only_the_redis_backend_imports_redis(module: str) -> None:
    imports_redis = any(name == "redis" or name.startswith("redis.") for name in _imports(module))
    assert imports_redis == (module == "_redis")


@pytest.mark.parametrize("module", MODULES)
def test_every_cache_module_states_its_purpose_and_stays_small(module: str) -> None:
    source = (CACHE_DIR / f"{module}.py").read_text()
    assert ast.get_docstring(ast.parse(source)), f"{module}.py has no module docstring"
    assert source.count("\n") < 600


def test_public_names_are_kept() -> None:
    exported = {
        "BreakerState",
        "CacheBackend",
        "CacheConfig",
        "CacheStats",
        "CacheWarmer",
        "CacheWarmingConfig",
        "MemoryBackend",
        "QueryUsage",
        "WarmReport",
    }
    assert exported <= set(baserepo.cache.__all__)
    assert {"CacheConfig", "CacheStats", "CacheWarmingConfig", "ModelCacheConfig"} <= set(
        baserepo.cache.config.__all__
    )
    assert {"QueryUsage", "WarmReport"} <= set(baserepo.cache.config.__all__)
    for name in baserepo.cache.config.__all__:
        assert getattr(baserepo.cache.config, name) is getattr(baserepo.cache, name, None) or (
            name == "ModelCacheConfig"
        )
