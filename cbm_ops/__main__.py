"""``python -m cbm_ops``: the ``cbm`` command line (:mod:`cbm_ops.cli`)."""

import sys

from .cli import main

sys.exit(main())
