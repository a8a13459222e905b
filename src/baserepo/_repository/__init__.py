"""BaseRepository and its defaults; the class is assembled in ``facade.py``."""

from .._bulk._batching import DEFAULT_BATCH_SIZE
from .bulk import DEFAULT_CHANGE_BATCH_SIZE
from .facade import BaseRepository

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CHANGE_BATCH_SIZE", "BaseRepository"]
