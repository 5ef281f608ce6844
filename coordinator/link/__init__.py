"""The dryad link: the SSH server dryads dial into, and the registry of connected dryads.

``server`` fences asyncssh in; ``session`` frames one dryad's JSON-RPC lines;
``registry`` implements ``ports.Dryads`` and hands the dryads' calls to the service.
"""
