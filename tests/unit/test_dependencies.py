"""The table of which extra installs which library agrees with pyproject.toml, and only its
libraries get an install hint."""

import re
import tomllib
from pathlib import Path

import pytest

from baserepo import ConfigurationError, MissingDependencyError
from baserepo._dependencies import EXTRAS, REQUIRED, missing_dependency, needs

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _names(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings (``psycopg[binary]>=3.2`` -> ``psycopg``)."""
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert match is not None, requirement
        names.add(match.group().lower())
    return names


@pytest.mark.parametrize(("module", "extra"), EXTRAS.items())
def test_each_hinted_extra_installs_its_library(module: str, extra: str) -> None:
    # Each module is published under its own name (asyncpg, psycopg, asyncmy, redis, rich).
    assert module in _names(PROJECT["optional-dependencies"][extra])


def test_required_modules_are_baserepo_requirements() -> None:
    # greenlet comes with SQLAlchemy's asyncio extra, the rest are named in dependencies.
    assert REQUIRED - {"greenlet"} <= _names(PROJECT["dependencies"])
    assert any(r.lower().startswith("sqlalchemy[asyncio]") for r in PROJECT["dependencies"])


def test_an_unrelated_missing_module_gets_no_hint() -> None:
    assert missing_dependency(ModuleNotFoundError("x", name="somelib"), "it") is None
    assert missing_dependency(ModuleNotFoundError("x"), "it") is None
    with pytest.raises(ModuleNotFoundError) as caught, needs("it"):
        raise ModuleNotFoundError("No module named 'somelib'", name="somelib")
    assert type(caught.value) is ModuleNotFoundError


def test_a_submodule_of_a_known_library_is_that_library() -> None:
    error = missing_dependency(ModuleNotFoundError("x", name="redis.asyncio"), "a Redis cache")
    assert isinstance(error, MissingDependencyError)
    assert isinstance(error, ConfigurationError)
    assert isinstance(error, ImportError)
    assert (error.name, error.extra) == ("redis", "redis")
    assert str(error) == (
        "a Redis cache needs redis, which is not installed: pip install 'baserepo[redis]'"
    )
