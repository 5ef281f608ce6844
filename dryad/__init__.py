"""The dryad: the agent on every MuxPi board."""

# A constant, not importlib.metadata: `stm` and `fota` import this package on every run,
# and reading the distribution's metadata costs them tens of milliseconds.
__version__ = "0.3.0"  # keep equal to pyproject.toml's version
