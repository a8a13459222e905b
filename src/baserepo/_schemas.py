"""Which create/update schemas a repository validates with, however it was declared.

In order, the first that names a schema wins (each schema separately):

1. the constructor's ``create_schema=`` / ``update_schema=``;
2. class attributes ``create_schema = UserCreate`` on the repository class (or a parent);
3. the type arguments: ``BaseRepository[User, UserCreate, UserUpdate](User, s)`` (the alias
   form) or ``class UserRepository(BaseRepository[User, UserCreate, UserUpdate])`` (the
   subclass form, found through ``__orig_bases__`` along the MRO, type variables of generic
   intermediate classes substituted).

Arguments that are not classes (``dict[str, Any]``, an unbound TypeVar, ``Any``: what an
argument left out defaults to) name no schema.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

__all__ = ["declared_schemas"]


def declared_schemas(
    repository: Any, root: type[Any], given: tuple[type[Any] | None, type[Any] | None]
) -> tuple[type[Any] | None, type[Any] | None]:
    """(create schema, update schema) of ``repository``, an instance of ``root`` (generic in
    ``[Model, CreateSchema, UpdateSchema, Id]``); ``given`` are the constructor's arguments."""
    declared = _type_arguments(repository, root)
    create, update = given
    if create is None:
        create = getattr(repository, "create_schema", None) or _concrete(declared[1])
    if update is None:
        update = getattr(repository, "update_schema", None) or _concrete(declared[2])
    return create, update


def _type_arguments(repository: Any, root: type[Any]) -> tuple[Any, ...]:
    # The alias form records its arguments on the instance only after __init__ returns.
    alias = getattr(repository, "__orig_class__", None)
    if alias is not None:
        found = _arguments_for(typing.get_origin(alias), typing.get_args(alias), root)
    else:
        found = _arguments_for(type(repository), (), root)
    # The key's type argument (the fourth) says nothing about schemas.
    return found[:3] if found is not None and len(found) >= 3 else (None, None, None)


def _arguments_for(cls: Any, args: tuple[Any, ...], root: type[Any]) -> tuple[Any, ...] | None:
    """``root``'s arguments as seen from ``cls[args]``, or None when they are not bound."""
    if not isinstance(cls, type) or not issubclass(cls, root):
        return None
    if cls is root:
        return args or None
    bound = dict(zip(getattr(cls, "__parameters__", ()), args, strict=False))
    # vars(), not getattr: a class without generic bases of its own inherits its parent's
    # __orig_bases__, which would skip the parent's own substitutions.
    for base in vars(cls).get("__orig_bases__", cls.__bases__):
        base_args = tuple(
            bound.get(arg, arg) if isinstance(arg, TypeVar) else arg
            for arg in typing.get_args(base)
        )
        found = _arguments_for(typing.get_origin(base) or base, base_args, root)
        if found is not None:
            return found
    return None


def _concrete(arg: Any) -> type[Any] | None:
    # typing.Any is a class since Python 3.11; as an argument it names no schema.
    return arg if isinstance(arg, type) and arg is not Any else None
