"""Run Python in a subprocess of this virtualenv with some modules made unimportable, as if
they were not installed: ``sys.modules[name] = None`` makes ``import name`` raise
``ModuleNotFoundError`` (with ``.name == name``), exactly what a missing package raises."""

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

TIMEOUT_SECONDS = 120


def run_without(
    blocked: Sequence[str], code: str, *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -c code`` with ``blocked`` unimportable before anything else is imported;
    ``env`` replaces the environment when given."""
    prelude = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env=dict(os.environ if env is None else env),
        check=False,
    )


def run_cli_without(
    blocked: Sequence[str], args: Sequence[str], *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``baserepo`` command (``baserepo.cli.main``) with ``blocked`` unimportable."""
    code = f"from baserepo.cli import main\nsys.exit(main({list(args)!r}))\n"
    return run_without(blocked, code, env=env)
