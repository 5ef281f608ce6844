"""``python -m coordinator.boruta_cli``: the ``boruta`` command."""

import sys

from coordinator.boruta_cli import main

sys.exit(main())
