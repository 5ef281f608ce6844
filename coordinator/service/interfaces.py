"""What the service needs from the world around it: the dryads and the tunnels (protocols)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Worker

if TYPE_CHECKING:  # only annotations: the `boruta` CLI imports this without asyncio
    from coordinator.wire import Display, HealthReport


class Dryads(Protocol):
    """Commands to a worker's dryad; the dryad link implements it.

    Each call returns when the dryad has done it and raises any exception when it could
    not; the service turns a failure into FAIL with the exception's text as the reason.
    """

    async def prepare(self, worker: WorkerUUID, public_key: str) -> None:
        """Recreate the job user with ``public_key`` as its only authorized key."""

    async def maintenance(self, worker: WorkerUUID, message: str) -> None:
        """Show maintenance on the board (message on the OLED, blinking LEDs)."""

    async def release(self, worker: WorkerUUID) -> None:
        """End the job's access: kill the job user's processes and remove the user."""

    async def healthcheck(self, worker: WorkerUUID) -> HealthReport:
        """Run every healthcheck now and return the results."""

    async def identify(self, worker: WorkerUUID, seconds: float) -> None:
        """Blink brightly so someone can find the board in the rack."""

    async def display(self, worker: WorkerUUID, panel: Display) -> None:
        """Show the worker's state on the board (LEDs and OLED)."""


class Tunnels(Protocol):
    """Per-job access paths from users to a worker's sshd."""

    async def open(self, rid: RequestID, worker: Worker) -> tuple[str, int]:
        """Open (or re-open after a restart) the job's path; returns the host and port to dial.

        :raises TunnelUnavailable: when the path cannot be opened now.
        """

    async def close(self, rid: RequestID) -> None:
        """Close the job's path and every connection through it; idempotent."""
