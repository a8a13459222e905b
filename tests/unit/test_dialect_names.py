"""Only the bulk dialect modules name a database or import ``sqlalchemy.dialects``.

Read from the source with ``ast``: a string constant (docstrings aside: prose may name a
database) that holds a database name as a word, and any import of ``sqlalchemy.dialects``.
Everything a database does differently lives in its dialect module, which the code asks for
capabilities instead of testing names (STYLE.md, "A dialect is chosen by database and driver").
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "baserepo"
DATABASE = re.compile(r"\b(postgres|postgresql|sqlite|mysql|mariadb)\b", re.IGNORECASE)

DIALECT_MODULES = {
    "_bulk/postgresql.py",
    "_bulk/postgresql_asyncpg.py",
    "_bulk/postgresql_stage.py",
    "_bulk/sqlite.py",
    "_bulk/mysql.py",
}
EXEMPT = {
    "_databases.py": "creates and drops databases: it builds each server's admin URL",
    "demo": "an application of the library: it picks a database and makes its engine",
    "cli/demo.py": "the demo's command line: its help shows an example URL of each database",
    "_dependencies.py": "names the extras (postgres, mysql) that install each driver",
}
"""Modules (or folders) that name databases because their job is to make databases or engines,
not to run statements on them."""
NOT_YET_MOVED: set[str] = set()
"""Modules still naming a database outside the dialect modules (none now). The test fails when
one of them stops naming a database, so the list only shrinks."""


def _module_names() -> list[str]:
    return sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))


def _exempt(name: str) -> bool:
    return name in DIALECT_MODULES or any(
        name == key or name.startswith(f"{key}/") for key in EXEMPT
    )


def _docstrings(tree: ast.Module) -> set[int]:
    """Module, class and function docstrings, and the strings under an assignment."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for position, statement in enumerate(body):
            if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)):
                continue
            after_assignment = position > 0 and isinstance(
                body[position - 1], ast.Assign | ast.AnnAssign
            )
            if position == 0 or after_assignment:
                found.add(id(statement.value))
    return found


def _offences(name: str, source: str | None = None) -> Iterator[str]:
    if source is None:
        source = (PACKAGE / name).read_text()
    tree = ast.parse(source, name)
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and DATABASE.search(node.value):
                yield f"{name}:{node.lineno}: names a database: {node.value[:60]!r}"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sqlalchemy.dialects"
        ):
            yield f"{name}:{node.lineno}: imports {node.module}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sqlalchemy.dialects"):
                    yield f"{name}:{node.lineno}: imports {alias.name}"


def test_only_the_dialect_modules_name_a_database() -> None:
    offences = [
        offence
        for name in _module_names()
        if not _exempt(name) and name not in NOT_YET_MOVED
        for offence in _offences(name)
    ]
    assert offences == []


def test_the_bulk_layer_names_databases_only_in_its_dialects() -> None:
    bulk = [name for name in _module_names() if name.startswith("_bulk/")]
    assert set(bulk) >= DIALECT_MODULES
    assert [o for name in bulk if name not in DIALECT_MODULES for o in _offences(name)] == []


def test_the_modules_not_yet_moved_still_need_their_exemption() -> None:
    assert [name for name in sorted(NOT_YET_MOVED) if not list(_offences(name))] == []


SAMPLE = '''"""PostgreSQL, named in prose."""
from sqlalchemy.dialects import sqlite
import sqlalchemy.dialects.mysql
LIMIT = 10
"""What SQLite allows, in prose."""
if dialect.name == "mariadb":
    pass
'''


def test_the_rule_sees_a_database_name_and_a_dialect_import() -> None:
    found = [offence.split(": ", 1)[1] for offence in _offences("sample.py", SAMPLE)]
    assert found == [
        "imports sqlalchemy.dialects",
        "imports sqlalchemy.dialects.mysql",
        "names a database: 'mariadb'",
    ]
