"""Job SSH keys: RSA-2048 as the original, handed out as PKCS#1 PEM (docs/boruta-api.md §keys)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

logger = logging.getLogger(__name__)

RSA_BITS = 2048  # docs/boruta-api.md §keys; the Go client parses exactly this PEM form


@dataclass(frozen=True, slots=True)
class JobKey:
    """A private key for the user and the matching ``authorized_keys`` line for the dryad."""

    private_pem: bytes = field(repr=False)
    public_openssh: str


def generate() -> JobKey:
    """Make a fresh key; blocking (about 60 ms of CPU), so call it off the event loop."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY": PKCS#1
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return JobKey(private_pem=pem, public_openssh=public.decode())


def public_of(private_pem: bytes) -> str:
    """The ``authorized_keys`` line of a stored private key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


class KeyPool:
    """Keys made ahead of time in a worker thread, so a PREPARE rarely waits for one.

    RSA generation costs tens of milliseconds; a small stock smooths bursts of finished
    jobs, and generation runs on another core while the event loop serves the API.
    """

    def __init__(self, size: int = 8, makers: int | None = None) -> None:
        self._size = size
        # OpenSSL releases the GIL while it searches for primes, so makers on several
        # threads multiply the rate (about 15 keys/s per core here).
        self._makers = makers or min(4, os.cpu_count() or 1)
        self._receive: MemoryObjectReceiveStream[JobKey] | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Fill the pool until cancelled; ``get`` works while this runs."""
        send, receive = anyio.create_memory_object_stream[JobKey](self._size)
        self._receive = receive
        async with send, receive, anyio.create_task_group() as tg:
            for _ in range(self._makers):
                tg.start_soon(self._make, send.clone())
            task_status.started()

    @staticmethod
    async def _make(send: MemoryObjectSendStream[JobKey]) -> None:
        async with send:
            while True:
                await send.send(await anyio.to_thread.run_sync(generate))

    async def get(self) -> JobKey:
        if self._receive is None:
            raise RuntimeError("the key pool is not running")
        return await self._receive.receive()
