"""``python -m dryad``: the same as the ``dryad`` command."""

from dryad.cli import main

raise SystemExit(main())
