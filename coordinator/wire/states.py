"""The worker states as the link speaks them: one vocabulary for the coordinator and the board."""

from __future__ import annotations

from enum import StrEnum


class WorkerState(StrEnum):
    """A worker's state on the wire (``display`` and the ``register`` answer).

    The values are the original's strings, the same as the coordinator's domain states
    (``coordinator.domain.states.WorkerState``, which the coordinator maps to these at its
    edge); the dryad draws its panel from them.
    """

    MAINTENANCE = "MAINTENANCE"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    PREPARE = "PREPARE"  # being prepared to enter IDLE
    BUSY = "BUSY"  # being prepared to enter MAINTENANCE
