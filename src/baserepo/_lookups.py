"""``field__lookup`` filters (Django's names) turned into SQLAlchemy expressions; no I/O.

Every value is checked against its column's type and converted first (``_filter_values``):
``salary__gte="42"`` becomes ``salary >= 42`` on every database, ``age__gte="abc"`` is an
InvalidFilterError before any SQL is built. ``in``/``not_in`` convert each element, ``range``
both bounds; ``isnull``/``isnotnull`` take ``True``/``False`` only; the text lookups
(``iexact``, ``contains``, ``startswith``... ``like``) take a ``str`` and apply only to text
columns (on a number, a date or an enum each database would do something else).

``LIKE`` wildcards in values are escaped (SQLAlchemy's ``autoescape``, escape character
``/``), so ``email__startswith="test_"`` matches only a literal underscore. On MySQL/MariaDB
the case-sensitive text lookups compare in binary, as Django does, because the default
collations there ignore case. On SQLite, whose ``LIKE`` ignores ASCII case whatever the
collation, they are rendered with ``GLOB`` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, ColumnElement, and_, false, func, not_, or_, true
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ._filter_values import column_filter
from ._model import model_info
from ._q import Q_KEY, Q
from .exceptions import InvalidFilterError

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import SQLCompiler

    from ._filter_values import ColumnFilter
    from ._model import ModelInfo

__all__ = [
    "LOOKUPS",
    "CaseSensitive",
    "CaseSensitiveMatch",
    "Target",
    "build_filters",
    "filter_keys",
    "filtered_attrs",
    "follows_relationships",
    "relations",
    "resolve_key",
    "split_key",
    "typed_filters",
]

SEPARATOR = "__"

Column = ColumnElement[Any]
Condition = ColumnElement[bool]


class CaseSensitive(FunctionElement[Any]):
    """Its argument, compared byte for byte where the dialect would otherwise ignore case."""

    name = "baserepo_case_sensitive"
    inherit_cache = True


@compiles(CaseSensitive)
def _compile_plain(element: CaseSensitive, compiler: SQLCompiler, **kw: Any) -> str:
    # A database whose comparisons ignore case adds its own rule (the bulk dialect modules).
    return str(compiler.process(element.clauses, **kw))


def _cs(column: Column) -> Column:
    return CaseSensitive(column)


class CaseSensitiveMatch(FunctionElement[bool]):
    """(LIKE match, equivalent GLOB match): the LIKE everywhere but SQLite, the GLOB there.

    SQLite's LIKE ignores ASCII case whatever the collation, so BINARY cannot help; its GLOB
    is case-sensitive. Both are built up front so the construct caches like any other.
    """

    name = "baserepo_case_sensitive_match"
    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: never rendered as "<match> = 1"


@compiles(CaseSensitiveMatch)
def _compile_like(element: CaseSensitiveMatch, compiler: SQLCompiler, **kw: Any) -> str:
    # The database whose LIKE ignores case renders the GLOB instead (its bulk dialect module).
    like, _glob = element.clauses.clauses
    return str(compiler.process(like, **kw))


# GLOB has no ESCAPE clause: a special character is made literal as a one-character class.
_GLOB_LITERAL = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]"})
_GLOB_FROM_LIKE = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]", "%": "*", "_": "?"})


def _glob(value: str) -> str:
    return value.translate(_GLOB_LITERAL)


def _sequence(key: str, value: Any) -> list[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidFilterError(key, f"expects a list, tuple or set, got {type(value).__name__}")
    return list(value)


def _range(key: str, value: Any) -> tuple[Any, Any]:
    bounds = _sequence(key, value)
    if len(bounds) != 2:
        raise InvalidFilterError(key, f"expects two bounds (low, high), got {len(bounds)}")
    return bounds[0], bounds[1]


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidFilterError(key, f"expects True or False, got {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidFilterError(key, f"expects a string, got {type(value).__name__}")
    return value


def _not_none(key: str, value: Any, why: str = "cannot compare with None") -> Any:
    if value is None:
        raise InvalidFilterError(key, f"{why}; use __isnull=True")
    return value


def _exact(key: str, col: Column, value: Any) -> Condition:
    return col.is_(None) if value is None else col == value


def _ne(key: str, col: Column, value: Any) -> Condition:
    return col.is_not(None) if value is None else (col != value) | col.is_(None)


def _in(key: str, col: Column, value: Any) -> Condition:
    return col.in_(_sequence(key, value))


def _not_in(key: str, col: Column, value: Any) -> Condition:
    return col.not_in(_sequence(key, value)) | col.is_(None)


def _isnull(key: str, col: Column, value: Any) -> Condition:
    return col.is_(None) if _flag(key, value) else col.is_not(None)


def _isnotnull(key: str, col: Column, value: Any) -> Condition:
    return col.is_not(None) if _flag(key, value) else col.is_(None)


def _between(key: str, col: Column, value: Any) -> Condition:
    low, high = _range(key, value)
    return col.between(_not_none(key, low), _not_none(key, high))


def _like(
    build: Callable[[Column, str], Condition], glob: Callable[[str], str] | None = None
) -> Any:
    """A LIKE-family lookup; ``glob`` (value -> GLOB pattern) makes it case-sensitive."""

    def lookup(key: str, col: Column, value: Any) -> Condition:
        text = _text(key, value)
        if glob is None:
            return build(col, text)
        glob_match = col.op("GLOB", is_comparison=True)(glob(text))
        return CaseSensitiveMatch(build(_cs(col), text), glob_match)

    return lookup


LookupFn = Callable[[str, Column, Any], Condition]

LOOKUPS: Mapping[str, LookupFn] = MappingProxyType(
    {
        "exact": _exact,
        "iexact": lambda k, c, v: func.lower(c) == func.lower(_text(k, v)),
        "ne": _ne,
        "lt": lambda k, c, v: c < _not_none(k, v),
        "lte": lambda k, c, v: c <= _not_none(k, v),
        "gt": lambda k, c, v: c > _not_none(k, v),
        "gte": lambda k, c, v: c >= _not_none(k, v),
        "in": _in,
        "not_in": _not_in,
        "range": _between,
        "isnull": _isnull,
        "isnotnull": _isnotnull,
        "startswith": _like(
            lambda c, v: c.startswith(v, autoescape=True), lambda v: f"{_glob(v)}*"
        ),
        "istartswith": _like(lambda c, v: c.istartswith(v, autoescape=True)),
        "endswith": _like(lambda c, v: c.endswith(v, autoescape=True), lambda v: f"*{_glob(v)}"),
        "iendswith": _like(lambda c, v: c.iendswith(v, autoescape=True)),
        "contains": _like(lambda c, v: c.contains(v, autoescape=True), lambda v: f"*{_glob(v)}*"),
        "icontains": _like(lambda c, v: c.icontains(v, autoescape=True)),
        "like": _like(lambda c, v: c.like(v), lambda v: v.translate(_GLOB_FROM_LIKE)),
        "ilike": _like(lambda c, v: c.ilike(v)),
    }
)
"""Every supported lookup; a key without ``__lookup`` means ``exact``. Read-only: a lookup
added at run time by one module would change every repository's filters."""


def split_key(info: ModelInfo, key: str) -> tuple[str, str]:
    """``"salary__lt"`` -> ``("salary", "lt")``, validating both halves."""
    return _split(info, key, key)


def _split(info: ModelInfo, key: str, rest: str) -> tuple[str, str]:
    """``rest`` (the part of ``key`` left for ``info``'s model) as (field, lookup)."""
    field, _, lookup = rest.rpartition(SEPARATOR)
    if not field or lookup not in LOOKUPS:
        # Either no lookup at all, or a field whose own name contains "__".
        field, lookup = rest, "exact"
    if field not in info.columns:
        head, _, tail = rest.rpartition(SEPARATOR)
        if head in info.columns and tail not in LOOKUPS:
            raise InvalidFilterError(key, f"unknown lookup {tail!r}", valid=sorted(LOOKUPS))
        raise InvalidFilterError(
            key,
            f"{info.model.__name__} has no field {field!r}",
            valid=sorted(info.columns) + [f"{name}__..." for name in sorted(relations(info))],
        )
    return field, lookup


@dataclass(frozen=True, slots=True)
class Target:
    """Where one filter key points: the column ``field`` of ``info``'s model, reached from the
    repository's model through the many-to-one relationships ``hops`` (none: its own)."""

    hops: tuple[Any, ...]
    info: ModelInfo
    field: str
    lookup: str


_RELATIONS: dict[type[Any], dict[str, Any]] = {}


def relations(info: ModelInfo) -> dict[str, Any]:
    """The model's relationships by attribute name (every kind: errors name them all).

    Read once per model: inspecting the mapper costs ~3 us a call, and relationship keys
    are resolved again on every cached read."""
    known = _RELATIONS.get(info.model)
    if known is None:
        known = _RELATIONS[info.model] = dict(sa_inspect(info.model).relationships.items())
    return known


def resolve_key(info: ModelInfo, key: str) -> Target:
    """``"team__name__icontains"`` -> the column ``Team.name`` reached through ``User.team``.

    Only scalar (many-to-one) relationships are followed: each becomes an ``EXISTS``
    (``has()``), which can never repeat a row the way a join on a collection would.
    """
    hops: list[Any] = []
    rest = key
    while True:
        head, separator, tail = rest.partition(SEPARATOR)
        relation = relations(info).get(head) if separator and head not in info.columns else None
        if relation is None:
            field, lookup = _split(info, key, rest)
            return Target(tuple(hops), info, field, lookup)
        if relation.uselist:
            raise InvalidFilterError(
                key,
                f"{info.model.__name__}.{head} is a collection; filters follow many-to-one "
                "relationships only",
            )
        hops.append(getattr(info.model, head))
        info = model_info(relation.mapper.class_)
        rest = tail


def filter_keys(filters: Mapping[str, Any]) -> list[str]:
    """Every ``field__lookup`` key of a filter mapping, those inside its ``Q`` included."""
    keys = [key for key in filters if key != Q_KEY]
    if Q_KEY in filters:
        keys += Q.from_spec(filters[Q_KEY]).keys()
    return keys


def follows_relationships(info: ModelInfo, filters: Mapping[str, Any]) -> bool:
    """Does any key of this filter mapping read another model's table?"""
    return any(resolve_key(info, key).hops for key in filter_keys(filters))


def filtered_attrs(info: ModelInfo, filters: Mapping[str, Any]) -> set[str]:
    """The model's own fields a filter mapping constrains (used to see whether it names
    ``deleted_at``; ``team__deleted_at`` is the team's, not this model's)."""
    targets = (resolve_key(info, key) for key in filter_keys(filters))
    return {t.field for t in targets if not t.hops}


TEXT_LOOKUPS = frozenset(
    {"iexact", "startswith", "istartswith", "endswith", "iendswith"}
    | {"contains", "icontains", "like", "ilike"}
)
_FLAG_LOOKUPS = frozenset({"isnull", "isnotnull"})
_LIST_LOOKUPS = frozenset({"in", "not_in"})


def typed_value(key: str, lookup: str, column: ColumnFilter, value: Any) -> Any:
    """``value`` checked and converted for ``lookup`` on ``column``; raises InvalidFilterError."""
    if lookup in _FLAG_LOOKUPS:
        return _flag(key, value)
    if lookup in TEXT_LOOKUPS:
        if not column.takes_text:
            raise InvalidFilterError(
                key, f"{value!r:.80}: {lookup} applies to text columns, not {column.label}"
            )
        return _text(key, value)
    if lookup in _LIST_LOOKUPS:
        # SQL's IN never matches NULL, and NOT IN with a NULL matches nothing at all.
        return [
            column.value(key, _not_none(key, item, f"__{lookup} cannot hold None"), f"item {i}: ")
            for i, item in enumerate(_sequence(key, value))
        ]
    if lookup == "range":
        low, high = _range(key, value)
        return (
            column.value(key, _not_none(key, low), "low bound: "),
            column.value(key, _not_none(key, high), "high bound: "),
        )
    if value is None:  # exact/ne: IS (NOT) NULL; the ordering lookups refuse it themselves
        return None
    return column.value(key, value)


def typed_filters(info: ModelInfo, filters: Mapping[str, Any]) -> dict[str, Any]:
    """``filters`` with every value checked against its column and converted (``"42"`` -> 42).

    Converting twice gives the same values, so the result can be passed on to build_filters
    and used as a cache key: ``age="42"`` and ``age=42`` are one query.
    """
    typed: dict[str, Any] = {}
    for key, value in filters.items():
        if key == Q_KEY:
            # Kept as its spec: plain values that key the cache and replay (``Q.from_spec``).
            typed[key] = Q.from_spec(value).map_values(lambda k, v: _typed(info, k, v)).spec()
            continue
        t = resolve_key(info, key)
        typed[key] = typed_value(key, t.lookup, column_filter(t.info.columns[t.field]), value)
    return typed


def build_filters(info: ModelInfo, filters: Mapping[str, Any], *, typed: bool = False) -> Condition:
    """AND of every ``field__lookup=value`` in ``filters``; raises InvalidFilterError.

    ``typed``: the values already went through ``typed_filters`` (not converted again).
    """
    conditions = []
    for key, value in filters.items():
        if key == Q_KEY:
            conditions.append(_q_condition(info, Q.from_spec(value), typed))
            continue
        t = resolve_key(info, key)
        if not typed:
            value = typed_value(key, t.lookup, column_filter(t.info.columns[t.field]), value)
        conditions.append(_condition(t, key, value))
    if not conditions:
        return true()
    return and_(*conditions) if len(conditions) > 1 else conditions[0]


def _condition(t: Target, key: str, value: Any) -> Condition:
    condition = LOOKUPS[t.lookup](key, getattr(t.info.model, t.field), value)
    for hop in reversed(t.hops):
        # The related model's soft delete is not applied: the filter says what it wants
        # (``team__deleted_at__isnull=True``), as Django's relationship lookups do.
        condition = hop.has(condition)
    return condition


def _typed(info: ModelInfo, key: str, value: Any) -> Any:
    t = resolve_key(info, key)
    return typed_value(key, t.lookup, column_filter(t.info.columns[t.field]), value)


def _q_condition(info: ModelInfo, q: Q, typed: bool) -> Condition:
    parts = [
        _q_condition(info, child, typed)
        if isinstance(child, Q)
        else _condition(
            resolve_key(info, child[0]),
            child[0],
            child[1] if typed else _typed(info, child[0], child[1]),
        )
        for child in q.children
    ]
    if q.op == "not":
        # Every row the inner filter does not match: a NULL comparison (unknown) counts as
        # no match, so ~Q(department="eng") keeps the rows with no department, as __ne does.
        return not_(func.coalesce(parts[0], false(), type_=Boolean))
    if not parts:
        return true()
    return or_(*parts) if q.op == "or" else and_(*parts)
