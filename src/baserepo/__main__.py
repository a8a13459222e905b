"""``python -m baserepo``: the ``baserepo`` command."""

import sys

from .cli import main

sys.exit(main())
