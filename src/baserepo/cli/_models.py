"""A model named on the command line as ``module:Class``, as uvicorn and celery name apps."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Mapper

__all__ = ["ModelNotFound", "load_model"]


class ModelNotFound(Exception):
    """``module:Class`` names no importable module, no attribute of it, or no mapped model."""


def load_model(path: str, app_dir: str | None = ".") -> type[Any]:
    """The SQLAlchemy model class ``path`` names (``myapp.models:User``; ``Outer.Inner`` for a
    nested class). ``app_dir`` goes first on ``sys.path``, as the console script, unlike
    ``python -m``, does not put the current directory there.

    Raises:
        ModelNotFound: with a one-line message saying what is missing.
    """
    module_name, separator, attribute = path.partition(":")
    if not separator or not module_name or not attribute:
        raise ModelNotFound(f"{path!r} is not module:Class (e.g. myapp.models:User)")
    if app_dir is not None:
        directory = str(Path(app_dir).resolve())
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise ModelNotFound(f"no module named {missing!r}") from None
        # The module exists but imports something that does not.
        raise ModelNotFound(f"importing {module_name} failed: {error}") from None
    except Exception as error:  # the module's own code failed: say so, without a traceback
        raise ModelNotFound(
            f"importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ModelNotFound(f"{module_name} has no attribute {attribute!r}") from None
    if not isinstance(found, type) or not isinstance(inspect(found, raiseerr=False), Mapper):
        raise ModelNotFound(f"{path} is not a mapped SQLAlchemy model class")
    return found
