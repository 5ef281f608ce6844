"""``python -m coordinator``: the same as ``boruta-coordinator``."""

from coordinator.cli import main

raise SystemExit(main())
