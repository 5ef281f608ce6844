"""The dryad's states: the link's, as the panel shows them, and the worker's, as the wire says.

The worker states are the wire's enum (``coordinator.wire.WorkerState``): the coordinator
sends them in ``display`` and the panel draws from them, so both ends speak one vocabulary.
"""

from __future__ import annotations

from enum import StrEnum

from coordinator.wire.states import WorkerState

__all__ = ["LinkState", "WorkerState"]


class LinkState(StrEnum):
    """Where the link to the coordinator stands; the values are what the panel shows."""

    CONNECTED = "connected"  # registered: the coordinator's display calls drive the panel
    DISCONNECTED = "disconnected"  # dialling, or waiting to dial again
    NOT_ENROLLED = "not enrolled"  # unknown to the coordinator and no token configured
    ENROLMENT_REFUSED = "enrolment refused"  # the token was invalid or expired
    HOST_KEY_MISMATCH = "host key changed"  # the coordinator is not the one we trusted
