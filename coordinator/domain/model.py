"""Value objects that cross every layer: users, requests, jobs, workers and transitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.states import RequestState, WorkerState

Caps = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class User:
    """Someone who may call the API; ``groups`` restrict which workers their requests get."""

    name: str
    admin: bool = False
    groups: tuple[str, ...] = ()


class KeyType(StrEnum):
    """The kind of a job's SSH key; the value is how the API names it (docs/boruta-api.md §keys)."""

    RSA = "rsa"  # RSA-2048, PKCS#1 PEM: the original's, for clients that do not ask
    ED25519 = "ed25519"  # OpenSSH private key format, for clients that ask for it


@dataclass(frozen=True, slots=True)
class Job:
    """A request's hold on a worker, from matching until the request ends."""

    worker: WorkerUUID
    started: datetime
    timeout: datetime  # DONE when reached, unless prolonged


@dataclass(frozen=True, slots=True)
class Request:
    """A user's request for a worker with some capabilities (docs/boruta-api.md §reqinfo)."""

    id: RequestID
    priority: int
    owner: str
    groups: tuple[str, ...]  # the owner's groups when it was made; non-empty ones restrict
    caps: Caps
    valid_after: datetime
    deadline: datetime
    state: RequestState
    created: datetime
    # FIFO position inside its priority: a counter shared by all requests. A priority
    # change takes a new number, so the request goes to the back (docs/boruta-api.md §queue).
    queued: int
    job: Job | None = None
    reason: str = ""  # why it became INVALID or FAILED (additive to the wire)
    key_type: KeyType = KeyType.RSA  # the job key it asked for (additive to the wire)


@dataclass(frozen=True, slots=True)
class Worker:
    """A board's dryad as the coordinator knows it (docs/boruta-api.md §workerinfo)."""

    uuid: WorkerUUID
    state: WorkerState
    caps: Caps  # always holds "UUID": uuid
    groups: tuple[str, ...]  # kept sorted, as the original does
    registered: datetime
    changed: datetime  # time of the last state change
    ssh_address: str = ""  # host:port of the dryad's sshd, the tunnels' destination
    reason: str = ""  # why it is FAILED
    # Bumped on every state change: a background operation (prepare, maintenance) started
    # at one epoch applies its result only if the worker is still at that epoch.
    epoch: int = 0
    # The current job key (PKCS#1 PEM for RSA, OpenSSH format for Ed25519); a secret,
    # so never in repr or logs.
    key: bytes = field(default=b"", repr=False)
    # The board sshd's host keys as its dryad last reported them, each ``type base64``
    # and checked (docs/boruta-api.md §host keys); empty when it reported none.
    host_keys: tuple[str, ...] = ()


SubjectKind = Literal["request", "worker"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded state change, the audit trail of the farm."""

    at: datetime
    kind: SubjectKind
    subject: str  # request ID or worker UUID, as text
    old: str  # "" when the subject was created
    new: str  # "" when the subject was removed
    reason: str = ""
    actor: str = ""  # user name, or "" for the coordinator itself


@dataclass(frozen=True, slots=True)
class AccessInfo:
    """How a job's user reaches its worker: address, key, user name (docs/boruta-api.md §access)."""

    host: str
    port: int
    key_pem: bytes = field(repr=False)
    username: str
    # The worker sshd's host keys the coordinator vouches for (``type base64`` each).
    host_keys: tuple[str, ...] = ()
