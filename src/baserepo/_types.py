"""The type variables the public generics share, and how a type checker reads a model's key.

Only type checkers care about this module: at run time the TypeVars' defaults are ``Any``
and nothing here is consulted. The defaults (PEP 696, through ``typing_extensions`` until
Python 3.13) are what make ``BaseRepository(User, session)`` complete under ``mypy --strict``:
the schema parameters fall back to what the methods accept without a schema, the key to
``Any``.

The key type is inferred only where the model says it in a form a checker can read: an
attribute named ``id`` declared ``Mapped[...]`` (``id: Mapped[int]`` gives ``int``). A key under
another name (``code: Mapped[str]``), an unannotated ``mapped_column()`` or a legacy
``Column()`` leaves it ``Any``; write it as the fourth type argument then:
``BaseRepository[Country, CountryCreate, CountryUpdate, str]``. Checked with mypy 1.11 to 2.4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from typing_extensions import TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeAlias

    from _typeshed import DataclassInstance
    from pydantic import BaseModel
    from sqlalchemy.orm import Mapped

    UnvalidatedRecord: TypeAlias = Mapping[str, Any] | BaseModel | DataclassInstance
    """What create/update take from a repository that declares no schema."""
else:
    # A run-time stand-in: pydantic is imported only once a schema needs it; Any names no
    # schema (_schemas.py).
    UnvalidatedRecord = Any

__all__ = [
    "CreateSchemaT",
    "IdT",
    "IdT_co",
    "KeyedModel",
    "ModelT",
    "ModelT_co",
    "UnvalidatedRecord",
    "UpdateSchemaT",
]

ModelT = TypeVar("ModelT")
CreateSchemaT = TypeVar("CreateSchemaT", default=UnvalidatedRecord)
UpdateSchemaT = TypeVar("UpdateSchemaT", default=UnvalidatedRecord)
IdT = TypeVar("IdT", default=Any)
"""The primary key's type: ``created_ids: list[IdT]``, ``get(id: IdT)``."""

# Events only carry models and ids out: covariant, so an EventHandler of
# RepositoryEvent[object] handles every model's events.
ModelT_co = TypeVar("ModelT_co", covariant=True, default=Any)
IdT_co = TypeVar("IdT_co", covariant=True, default=Any)


class KeyedModel(Protocol[ModelT_co, IdT_co]):
    """An instance of a model whose key a checker can read: ``type[KeyedModel[M, I]]``
    matched against ``User`` solves ``M = User`` and ``I = int`` for ``id: Mapped[int]``.
    Never used at run time."""

    # Mapped[...] as declared, not the value read from an instance: mypy up to 2.3 matches
    # protocol members by the declared type, later versions by either.
    @property
    def id(self) -> Mapped[IdT_co]: ...

    # Every object's __class__ is type[Self]: matching it is how the model type itself is
    # solved from the same argument (a protocol cannot name "the class that matched").
    @property  # type: ignore[override]
    def __class__(self) -> type[ModelT_co]: ...

    @__class__.setter
    def __class__(self, value: type[Any]) -> None: ...
