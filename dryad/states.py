"""The link's states as the dryad shows them: what the panel says while not serving."""

from __future__ import annotations

from enum import StrEnum


class LinkState(StrEnum):
    """Where the link to the coordinator stands; the values are what the panel shows."""

    CONNECTED = "connected"  # registered: the coordinator's display calls drive the panel
    DISCONNECTED = "disconnected"  # dialling, or waiting to dial again
    NOT_ENROLLED = "not enrolled"  # unknown to the coordinator and no token configured
    ENROLMENT_REFUSED = "enrolment refused"  # the token was invalid or expired
    HOST_KEY_MISMATCH = "host key changed"  # the coordinator is not the one we trusted
