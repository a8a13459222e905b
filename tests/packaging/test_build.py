"""The package as the index would get it: ``python -m build`` makes an sdist and, from that
sdist, a wheel; both carry the license, the typing marker and metadata that renders on the
index (no relative link), and no local junk; each installs in a fresh virtualenv, where the
quick start (``baserepo demo`` on the default SQLite file, in-process cache) runs.

Slow (about a minute: a build, a virtualenv, the dependencies from the package index through
pip's cache, two demo runs). The index must be reachable, as for ``pip install -e .[dev]``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import baserepo

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "baserepo"
TIMEOUT_SECONDS = 600
DEMO_ROWS = "100"
JUNK = re.compile(r"(__pycache__|\.pyc$|\.venv/|\.git/|\.db$|\.sqlite3$|_cache/|bench/results/)")
"""Paths that are local state, never part of a distribution."""

pytestmark = pytest.mark.slow


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=out)
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1, wheels
    assert len(sdists) == 1, sdists
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _long_description_links(metadata: str) -> list[str]:
    """Link and image targets of the Markdown long description, code left out."""
    body = Parser().parsestr(metadata).get_payload()
    assert isinstance(body, str)
    prose = re.sub(r"^```.*?^```", "", body, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"\]\(([^)\s]+)\)", prose) + re.findall(r'src="([^"]+)"', prose)


def test_the_wheel_carries_the_package_its_license_and_absolute_links(
    dist: dict[str, Path],
) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"baserepo-{baserepo.__version__}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    modules = {f"baserepo/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert modules <= names
    assert {"baserepo/py.typed", f"{info}/licenses/LICENSE"} <= names
    assert {name.split("/")[0] for name in names} == {"baserepo", info}  # no tests, no bench
    assert [name for name in names if JUNK.search(name)] == []
    assert "baserepo = baserepo.cli:main" in entry_points

    headers = Parser().parsestr(metadata)
    assert headers["License-Expression"] == "MIT"
    assert headers["Author"] == "baserepo contributors"
    assert "Typing :: Typed" in headers.get_all("Classifier", [])
    urls = dict(url.split(", ", 1) for url in headers.get_all("Project-URL", []))
    assert set(urls) >= {"Homepage", "Documentation", "Changelog", "Issues"}
    assert headers["Description-Content-Type"] == "text/markdown"
    links = _long_description_links(metadata)
    assert "https://github.com/baserepo/baserepo/blob/main/docs/guide.md" in links
    relative = [link for link in links if not link.startswith(("https://", "#"))]
    assert relative == [], "relative links break on the package index"
    assert not re.search(r"\]\((docs|bench|examples)/", metadata)


def test_the_sdist_carries_the_sources_license_and_docs_without_junk(
    dist: dict[str, Path],
) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        top = f"baserepo-{baserepo.__version__}/"
        names = {name.removeprefix(top) for name in sdist.getnames()}
    wanted = {
        "PKG-INFO",
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "docs/guide.md",
        "src/baserepo/__init__.py",
        "src/baserepo/py.typed",
    }
    assert wanted <= names
    assert [name for name in names if JUNK.search(name)] == []
    assert not any(name.startswith((".ci/", "dev")) for name in names)


def test_the_wheel_and_the_sdist_install_in_a_fresh_venv_and_run_the_demo(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The user's environment: nothing of this checkout's, the demo's SQLite file in TMPDIR.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BASEREPO_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))
    }
    env["TMPDIR"] = str(tmp_path)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]

    _run([*pip, dist["wheel"]], cwd=tmp_path, env=env)
    where = "import baserepo; print(baserepo.__file__)"
    located = _run([python, "-c", where], cwd=tmp_path, env=env)
    assert Path(located.strip()).is_relative_to(env_dir), "imported the checkout, not the wheel"
    _assert_demo_runs(env_dir, tmp_path, env)

    # The sdist on its own: built again by pip in an isolated environment, then installed.
    _run([*pip, "--force-reinstall", "--no-deps", dist["sdist"]], cwd=tmp_path, env=env)
    _assert_demo_runs(env_dir, tmp_path, env)


def _assert_demo_runs(env_dir: Path, tmp_path: Path, env: dict[str, str]) -> None:
    # No rich (the cli extra) in this venv: the demo narrates in plain text.
    (tmp_path / "baserepo_demo.sqlite3").unlink(missing_ok=True)
    out = _run([env_dir / "bin" / "baserepo", "demo", "--rows", DEMO_ROWS], cwd=tmp_path, env=env)
    assert "== baserepo demo on sqlite" in out
    assert f"database: sqlite+aiosqlite:///{tmp_path / 'baserepo_demo.sqlite3'}" in out
    assert "1. bulk_create" in out
    assert (tmp_path / "baserepo_demo.sqlite3").is_file()
