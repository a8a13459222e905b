"""The one storage format of a cache entry: ``b"<generation>:<payload>"``.

Invariant: a payload is served only under the generation it was stored with. Anything that is
not an envelope (no separator, a generation that is not a decimal number) reads as absent, so
a value the cache did not write is never served. Every backend stores and reads entries
through these two functions.
"""

from __future__ import annotations

__all__ = ["open_envelope", "seal", "sealed_generation"]


def seal(generation: int, payload: bytes) -> bytes:
    """The stored form of ``payload``, filled under ``generation``."""
    return b"%d:%b" % (generation, payload)


def open_envelope(stored: bytes | None, generation: int) -> bytes | None:
    """The payload of ``stored`` if it was sealed under ``generation``, else None."""
    if stored is None:
        return None
    stored_generation, separator, payload = stored.partition(b":")
    if not separator or not stored_generation.isdigit():
        return None
    return payload if int(stored_generation) == generation else None


def sealed_generation(stored: bytes) -> int | None:
    """The generation ``stored`` (or its first bytes) was sealed under; None if it is not
    an envelope."""
    stored_generation, separator, _ = stored.partition(b":")
    if not separator or not stored_generation.isdigit():
        return None
    return int(stored_generation)
