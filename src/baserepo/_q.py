"""``Q``: filters combined with OR, AND and NOT, as a value that can key the cache.

A ``Q`` holds ``field__lookup=value`` pairs (the same keys as keyword filters, relationship
keys included) and how they combine; it builds no SQL itself (``_lookups.build_filters`` does,
with every value typed against its column). It travels inside a filter mapping under the key
``"$q"`` (no mapped attribute can be named so), which is how list, count, exists, page and the
bulk changes take it without another argument, and how the cache keys and replays it: its
``spec()`` is plain lists and values, rebuilt by ``Q.from_spec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["Q", "Q_KEY", "as_filters"]

Q_KEY = "$q"
"""The key a Q travels under in a filter mapping."""

_AND, _OR, _NOT, _LEAF = "and", "or", "not", "f"


class Q:
    """Filters to combine: ``Q(name="a") | Q(age__gte=3)``, ``~Q(role="admin")``, ``&``.

    ``Q(a=1, b=2)`` means both, like keyword filters; an empty ``Q()`` matches every row.

    Example::

        await repo.list(Q(department="eng") | Q(salary__gte=100), is_active=True)
        await repo.bulk_delete(~Q(team__name="core") & Q(last_login__lt="2024-01-01"))
    """

    __slots__ = ("_children", "_op")

    def __init__(self, **filters: Any) -> None:
        self._op = _AND
        # Sorted: Q(a=1, b=2) and Q(b=2, a=1) are one query, one cache entry.
        self._children: tuple[Q | tuple[str, Any], ...] = tuple(sorted(filters.items()))

    @classmethod
    def _node(cls, op: str, children: tuple[Q | tuple[str, Any], ...]) -> Q:
        node = cls.__new__(cls)
        node._op, node._children = op, children
        return node

    def __and__(self, other: Q) -> Q:
        return Q._node(_AND, (self, _check(other)))

    def __or__(self, other: Q) -> Q:
        return Q._node(_OR, (self, _check(other)))

    def __invert__(self) -> Q:
        return Q._node(_NOT, (self,))

    def __bool__(self) -> bool:
        """False for ``Q()``, which filters nothing (a bulk change then needs all_rows)."""
        return bool(self._children)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Q) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(repr(self.spec()))

    def __repr__(self) -> str:
        if self._op == _NOT:
            return f"~{self._children[0]!r}"
        if self._op == _AND and all(isinstance(c, tuple) for c in self._children):
            return "Q(" + ", ".join(f"{k}={v!r}" for k, v in self._children) + ")"  # type: ignore[misc]
        joiner = " & " if self._op == _AND else " | "
        return "(" + joiner.join(repr(c) for c in self._children) + ")"

    @property
    def op(self) -> str:
        """``"and"``, ``"or"`` or ``"not"``."""
        return self._op

    @property
    def children(self) -> tuple[Q | tuple[str, Any], ...]:
        """Nested ``Q``s and ``(key, value)`` pairs."""
        return self._children

    def keys(self) -> Iterator[str]:
        """Every filter key inside, at any depth."""
        for child in self._children:
            if isinstance(child, Q):
                yield from child.keys()
            else:
                yield child[0]

    def map_values(self, convert: Any) -> Q:
        """A copy with ``convert(key, value)`` for every value (typing them for columns)."""
        return Q._node(
            self._op,
            tuple(
                c.map_values(convert) if isinstance(c, Q) else (c[0], convert(c[0], c[1]))
                for c in self._children
            ),
        )

    def spec(self) -> list[Any]:
        """Plain lists and values (what keys the cache and comes back from it)."""
        return [
            self._op,
            [c.spec() if isinstance(c, Q) else [_LEAF, c[0], c[1]] for c in self._children],
        ]

    @classmethod
    def from_spec(cls, spec: Any) -> Q:
        """The Q of ``spec()``; TypeError for anything else."""
        if isinstance(spec, Q):
            return spec
        try:
            op, children = spec
            if op not in (_AND, _OR, _NOT) or (op == _NOT and len(children) != 1):
                raise ValueError(op)
            built: list[Q | tuple[str, Any]] = []
            for child in children:
                if child[0] == _LEAF:
                    _, key, value = child
                    built.append((str(key), value))
                else:
                    built.append(cls.from_spec(child))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"not a Q or the spec of one: {spec!r:.80}") from exc
        return cls._node(op, tuple(built))


def _check(other: object) -> Q:
    if not isinstance(other, Q):
        raise TypeError(f"a Q combines with another Q, not {type(other).__name__}")
    return other


def as_filters(filters: Mapping[str, Any] | Q) -> Mapping[str, Any]:
    """A Q as the filter mapping that carries it; a mapping as it is."""
    if isinstance(filters, Q):
        return {Q_KEY: filters} if filters else {}
    return filters
