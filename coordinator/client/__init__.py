"""The Python client: ``Client``/``AsyncClient`` over HTTP, ``LocalClient`` (in
``coordinator.client.local``) on an in-process service, all with the same methods and errors."""

from coordinator.client.errors import ServerUnreachable, UnexpectedAnswer
from coordinator.client.http import AsyncClient, Client
from coordinator.client.models import JobInfo, RequestInfo, TransitionInfo, WorkerInfo

__all__ = [
    "AsyncClient",
    "Client",
    "JobInfo",
    "RequestInfo",
    "ServerUnreachable",
    "TransitionInfo",
    "UnexpectedAnswer",
    "WorkerInfo",
]
