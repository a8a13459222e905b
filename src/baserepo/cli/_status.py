"""The exit statuses of the ``baserepo`` command: one table, quoted by ``--help`` and docs."""

from __future__ import annotations

__all__ = [
    "DATABASE_UNAVAILABLE",
    "EXIT_CODES_HELP",
    "FAILED",
    "INTERRUPTED",
    "MODEL_NOT_FOUND",
    "OK",
    "REDIS_UNAVAILABLE",
    "USAGE",
]

OK = 0
FAILED = 1
"""The command ran and did not do all it should (a query that could not be warmed...)."""
USAGE = 2
"""Bad arguments (argparse's own status too), an unusable URL, a missing extra."""
REDIS_UNAVAILABLE = 3
MODEL_NOT_FOUND = 4
"""``module:Class`` names no module, no attribute, or no model baserepo can serve."""
DATABASE_UNAVAILABLE = 5
INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit status:
  {OK}    done
  {FAILED}    the operation failed or was incomplete (e.g. a query could not be warmed)
  {USAGE}    usage error: bad arguments, an unusable URL, a missing extra
  {REDIS_UNAVAILABLE}    Redis unreachable (or lost during the command)
  {MODEL_NOT_FOUND}    the model (module:Class) was not found or is not a mapped model
  {DATABASE_UNAVAILABLE}    the database unreachable (cache warm)
  {INTERRUPTED}  interrupted (Ctrl-C)"""
