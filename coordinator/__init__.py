"""Boruta coordinator: the farm's queue, matcher and HTTP API v1 (kept light for the dryad)."""

__version__ = "0.3.0"
