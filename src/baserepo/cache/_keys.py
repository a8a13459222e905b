"""Cache keys that read like paths, and canonical, replayable query specs.

Every key of one model shares the Redis Cluster hash tag ``{<table>}``, so the model's
generation, entries and leases live in one slot (MGET and compare-and-set stay single-slot):

    baserepo:v1:{users}:list:<layout>.<digest>  a cached list() result (layout: the row
                                              codec's column layout, see RowCodec.layout)
    baserepo:v1:{users}:~gen                 the model's generation (metadata keys carry "~")
    baserepo:v1:{users}:~usage               popular-query scores (sorted set)

``invalidate_cache("list:*")`` is relative to ``baserepo:v1:{users}:``.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import uuid
from typing import Any

import orjson

__all__ = ["KeySpace", "NotCacheable", "decode_spec", "encode_spec", "spec_digest"]

SCHEMA_VERSION = "v1"


class NotCacheable(Exception):
    """The query holds a value we cannot put in a key faithfully; it runs uncached."""


class KeySpace:
    """The keys of one model under one prefix."""

    def __init__(self, prefix: str, table: str, layout: str = "") -> None:
        self.base = f"{prefix}:{SCHEMA_VERSION}:{{{table}}}"
        # Entries depend on the model's column layout; the generation, usage and leases do
        # not: a write by a process of another deployment must still retire this one's
        # entries, and popular queries are the same queries whatever the columns.
        self._entry_prefix = f"{layout}." if layout else ""
        self.generation = f"{self.base}:~gen"
        self.usage = f"{self.base}:~usage"
        self.usage_specs = f"{self.base}:~usage-specs"

    def entry(self, kind: str, digest: str) -> str:
        return f"{self.base}:{kind}:{self._entry_prefix}{digest}"

    def lease(self, digest: str) -> str:
        return f"{self.base}:~lease:{digest}"

    def warm_lock(self, interval_number: int) -> str:
        return f"{self.base}:~warm:{interval_number}"

    def pattern(self, relative: str) -> str:
        """``"list:*"`` -> ``"baserepo:v1:{users}:list:*"``."""
        return f"{self.base}:{relative.lstrip(':')}"


# Values that JSON has no type for are tagged, so a replayed query gets the same Python
# values back (a datetime filter must not come back as a string).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _tag(value: Any) -> Any:
    if type(value) in _PLAIN:  # the common case first: this runs on every cached read
        return value
    if isinstance(value, dict):
        return {str(k): _tag(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, set | frozenset):
        return {"$set": sorted((_tag(v) for v in value), key=orjson.dumps)}
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    if isinstance(value, str | int | float | bool):  # subclasses (IntEnum, str enums)
        return value
    raise NotCacheable(f"cannot key a query on a {type(value).__name__}")


_UNTAG = {
    "$dt": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$dec": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$b64": base64.b64decode,
}


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag in _UNTAG:
                return _UNTAG[tag](inner)
            if tag == "$set":
                return {_untag(v) for v in inner}
        return {k: _untag(v) for k, v in value.items()}
    return value


def encode_spec(spec: dict[str, Any]) -> bytes:
    """Canonical bytes of a query spec: equal queries give equal bytes (sorted keys)."""
    return orjson.dumps(_tag(spec), option=orjson.OPT_SORT_KEYS)


def decode_spec(data: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = _untag(orjson.loads(data))
    return decoded


def spec_digest(encoded: bytes) -> str:
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()
