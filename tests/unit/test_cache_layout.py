"""The shape of ``baserepo.cache``: its public names kept, no import cycle (counting imports
made only for type checking and imports inside functions), the state modules never importing
the settings, and redis imported by ``_redis.py`` alone. Read from the source: no database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import baserepo.cache
import baserepo.cache.config
from tests.unit.import_graph import cycles, imports_of, package_graph

CACHE_DIR = Path(baserepo.cache.__file__).parent
PACKAGE = "baserepo.cache"
MODULES = sorted(path.stem for path in CACHE_DIR.glob("*.py"))
STATE_MODULES = ("_guard", "_runtime", "_stats", "_usage")
"""The running cache: none of them may import the settings (``config``)."""


def _imports(module: str) -> set[str]:
    """Every module ``module`` imports, absolute, wherever the import statement is."""
    source = (CACHE_DIR / f"{module}.py").read_text()
    name = PACKAGE if module == "__init__" else f"{PACKAGE}.{module}"
    return imports_of(source, name, is_package=module == "__init__")


def test_the_cache_package_has_no_import_cycle() -> None:
    graph = package_graph(CACHE_DIR, PACKAGE)
    assert f"{PACKAGE}._reads" in graph  # the walk found the modules
    assert cycles(graph) == []


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
