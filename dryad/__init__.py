"""The dryad: the agent on every MuxPi board."""
