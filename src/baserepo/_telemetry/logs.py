"""The library's loggers: ``baserepo`` and a child per area.

``baserepo.bulk`` (a DEBUG line per batch, a WARNING per rolled-back batch, MariaDB's
warnings summarised), ``baserepo.cache`` (``.warming``), ``baserepo.events``,
``baserepo.transactions``, ``baserepo.replicas``. The library never configures logging: a
``NullHandler`` on ``baserepo`` keeps Python's last-resort handler from printing its warnings
to stderr when the application has configured nothing.
"""

import logging

__all__ = ["ROOT"]

ROOT = logging.getLogger("baserepo")
if not any(isinstance(handler, logging.NullHandler) for handler in ROOT.handlers):
    ROOT.addHandler(logging.NullHandler())
