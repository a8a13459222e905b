"""What the repository needs to know about a mapped model, read once from its mapper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Index, PrimaryKeyConstraint, Table, UniqueConstraint, inspect
from sqlalchemy.sql.schema import Computed, Identity

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.orm import ColumnProperty, Mapper

__all__ = ["ModelInfo", "model_info"]


@dataclass(frozen=True, slots=True, eq=False)
class ModelInfo:
    model: type[Any]
    table: Table
    pk_attr: str
    """Attribute name of the single-column primary key."""
    columns: dict[str, Column[Any]]
    """Writable columns by attribute name (what users pass and filter on)."""
    column_keys: dict[str, str]
    """Attribute name -> Core column key, for statements built on the table."""
    required: frozenset[str]
    """Attributes a new record must give: NOT NULL with no default of any kind."""
    unique_groups: tuple[tuple[str, ...], ...]
    """Attribute-name groups each bound by a unique constraint or index (primary key first)."""
    pk_is_autoincrement: bool
    """The database generates integer keys that increase in insertion order."""

    @property
    def pk_column(self) -> Column[Any]:
        return self.columns[self.pk_attr]

    @property
    def name(self) -> str:
        return self.table.name

    def soft_delete_attr(self, column_name: str) -> str | None:
        return column_name if column_name in self.columns else None


_INFO: dict[type[Any], ModelInfo] = {}


def model_info(model: type[Any]) -> ModelInfo:
    """Inspect ``model`` once; raises ConfigurationError for shapes we cannot serve."""
    known = _INFO.get(model)
    if known is None:
        known = _INFO[model] = _inspect_model(model)
    return known


def _inspect_model(model: type[Any]) -> ModelInfo:
    try:
        mapper: Mapper[Any] = inspect(model)
    except Exception as exc:
        raise ConfigurationError(f"{model!r} is not a mapped SQLAlchemy model") from exc
    table = mapper.local_table
    if not isinstance(table, Table):
        raise ConfigurationError(f"{model.__name__} is not mapped to a single table")
    if len(mapper.primary_key) != 1:
        raise ConfigurationError(
            f"{model.__name__} has a composite primary key; baserepo needs a single-column one"
        )

    columns: dict[str, Column[Any]] = {}
    for prop in mapper.column_attrs:
        column = _own_column(prop, table)
        if column is not None:
            columns[prop.key] = column
    attr_by_column = {column.key: attr for attr, column in columns.items()}
    pk_attr = attr_by_column[str(mapper.primary_key[0].key)]
    autoincrement = table.autoincrement_column

    required = frozenset(
        attr
        for attr, column in columns.items()
        if not column.nullable
        and column.default is None
        and column.server_default is None
        and column is not autoincrement
        and not isinstance(column.server_default, Computed | Identity)
        and column.identity is None
        and column.computed is None
    )

    groups: list[tuple[str, ...]] = []
    for constraint in table.constraints:
        if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint):
            groups.append(tuple(attr_by_column[c.key] for c in constraint.columns))
    for index in table.indexes:
        if (
            isinstance(index, Index)
            and index.unique
            and all(isinstance(e, Column) for e in index.expressions)
        ):
            groups.append(tuple(attr_by_column[c.key] for c in index.columns))
    for attr, column in columns.items():
        if column.unique and (attr,) not in groups:
            groups.append((attr,))
    groups.sort(key=lambda g: g != (pk_attr,))

    return ModelInfo(
        model=model,
        table=table,
        pk_attr=pk_attr,
        columns=columns,
        column_keys={attr: column.key for attr, column in columns.items()},
        required=required,
        unique_groups=tuple(dict.fromkeys(groups)),
        pk_is_autoincrement=autoincrement is not None
        and autoincrement is columns[pk_attr]
        and autoincrement.type.python_type is int,
    )


def _own_column(prop: ColumnProperty[Any], table: Table) -> Column[Any] | None:
    if len(prop.columns) != 1:
        return None
    column = prop.columns[0]
    if not isinstance(column, Column) or column.table is not table:
        return None
    return column
