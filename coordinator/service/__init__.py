"""The application service: the farm's operations, one at a time, each stored before it answers.

Owns the in-memory farm (``farm``), the operation (``operations.Service``) that asks the
pure domain for the new state and commits it with its audit (``batch``, ``cascade``,
``creations``), the dryad-side steps of PREPARE and BUSY (``steps``), link presence
(``presence``) and the job keys (``keys``). What it needs from outside is declared in
``interfaces`` (the dryads and the tunnels). It may import the domain, the errors, the
store port and the link's wire types; never the HTTP API, the feed, the tunnels or the
dryad link itself, which are handed to it by ``coordinator.assembly``.
"""
