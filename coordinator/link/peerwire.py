"""What coordinators say to each other about dryad links: the paths, bodies and errors of
the peer routes (docs/failover.md §scale-out, "step 2").

A dryad's call travels as the link's own table says (``wire.TABLE``): its params and
result are the same JSON values as on the link, so both ends parse them with the row's
types and nothing is defined twice. A failure comes back as an ``error`` object whose
``kind`` tells the caller which exception to raise again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from coordinator import wire
from coordinator.domain.ids import WorkerUUID
from coordinator.wire import Method, RpcError

PEER_HEADER: Final = "Boruta-Peer"  # the farm's secret (httpd.peergate checks it)
PREFIX: Final = "/peer/v1/"
HOLDERS: Final = PREFIX + "holders"  # PUT: a holder's whole set of links, re-announced
LINKS: Final = PREFIX + "links/"  # POST links/{uuid}/{method}: a dryad's call to the leader
DRYADS: Final = PREFIX + "dryads/"  # POST dryads/{uuid}/{method}: the leader's call to a dryad
TUNNELS: Final = PREFIX + "tunnels/"  # PUT/DELETE tunnels/{rid}: a job's tunnel on the holder
ENROL: Final = PREFIX + "enrol/"  # POST enrol/{uuid}: a dryad's enrolment, decided by the leader

# The leader's calls a holder performs on its link (dial_back belongs to tunnels, step 4).
TO_DRYAD: Final[Mapping[str, Method[Any, Any]]] = {
    row: row for row in (wire.PREPARE, wire.RELEASE, wire.MAINTENANCE, wire.HEALTHCHECK,
                         wire.IDENTIFY, wire.DISPLAY)
}  # fmt: skip
# A dryad's calls a holder passes to the leader (enrol has its route: ``ENROL``).
TO_LEADER: Final[Mapping[str, Method[Any, Any]]] = {
    row: row for row in (wire.REGISTER, wire.SET_FAIL, wire.HEALTH, wire.BUTTON, wire.PANEL)
}

# Kinds of failure, each raised again by the caller as the exception it was.
UNREACHABLE: Final = "unreachable"  # ConnectionError: no link, or it broke during the call
TIMEOUT: Final = "timeout"  # TimeoutError: the dryad did not answer in the row's time
REFUSED: Final = "refused"  # wire.RpcError with ``code``: the other end said no
MAX_LINKS: Final = 100_000  # links one announcement may name
MAX_KEY: Final = 16 << 10  # characters of a public key (an RSA key of 16384 bits is ~2,800)
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_KEY: Final = re.compile(r"[a-z0-9@.-]{1,64} [A-Za-z0-9+/]+={0,2}")


class PeerWireError(ValueError):
    """A peer's body is not what the route takes."""


def failure(exc: BaseException) -> dict[str, Any]:
    """The ``error`` body of an exception from a dryad call or a leader's decision."""
    if isinstance(exc, RpcError):
        return {"error": {"kind": REFUSED, "code": exc.code, "message": exc.message}}
    kind = TIMEOUT if isinstance(exc, TimeoutError) else UNREACHABLE
    return {"error": {"kind": kind, "message": str(exc) or type(exc).__name__}}


def raise_failure(body: Any, where: str) -> None:
    """Raise the exception an ``error`` body stands for; return if ``body`` has none.

    :raises ConnectionError: for a body that is neither a result nor an error.
    """
    if not isinstance(body, dict):
        raise ConnectionError(f"{where} answered something that is not a peer answer")
    err = body.get("error")
    if err is None:
        if "result" not in body:
            raise ConnectionError(f"{where} answered neither a result nor an error")
        return
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        raise ConnectionError(f"{where} answered a malformed error")
    message: str = err["message"]
    kind = err.get("kind")
    if kind == REFUSED and isinstance(err.get("code"), int):
        raise RpcError(err["code"], message)
    if kind == TIMEOUT:
        raise TimeoutError(message)
    raise ConnectionError(message)


def announcement(holder: str, links: Mapping[WorkerUUID, int]) -> dict[str, Any]:
    return {"holder": holder, "links": dict(links)}


def read_announcement(body: Any) -> tuple[str, dict[WorkerUUID, int]]:
    """The holder's URL and its links, each with the number of its session there (a new
    session of the same dryad has a higher one), from a ``PUT holders`` body.

    :raises PeerWireError: for anything else.
    """
    if not isinstance(body, dict):
        raise PeerWireError("the body must be an object")
    holder, links = body.get("holder"), body.get("links")
    if not isinstance(holder, str) or not holder:
        raise PeerWireError("holder must be a non-empty string (the holder's peer URL)")
    if not isinstance(links, dict) or not all(
        type(seq) is int and seq >= 0 for seq in links.values()
    ):
        raise PeerWireError("links must map worker UUIDs to session numbers")
    if len(links) > MAX_LINKS:
        raise PeerWireError(f"more than {MAX_LINKS} links")
    return holder, {WorkerUUID(uuid): seq for uuid, seq in links.items()}


def link_call(holder: str, params: Any) -> dict[str, Any]:
    return {"holder": holder, "params": params}


def read_link_call(body: Any) -> tuple[str, dict[str, Any]]:
    """The holder's URL and the dryad's params from a ``POST links/…`` body.

    :raises PeerWireError: for anything else.
    """
    if not isinstance(body, dict):
        raise PeerWireError("the body must be an object")
    holder, params = body.get("holder"), body.get("params")
    if not isinstance(holder, str) or not holder:
        raise PeerWireError("holder must be a non-empty string (the holder's peer URL)")
    if not isinstance(params, dict):
        raise PeerWireError("params must be an object")
    return holder, params


def enrolment(holder: str, token_hash: str, public_key: str) -> dict[str, Any]:
    """A ``POST enrol/…`` body: the token travels as its hash, as it is stored."""
    return {"holder": holder, "token_hash": token_hash, "public_key": public_key}


def read_enrolment(body: Any) -> tuple[str, str, str]:
    """The holder's URL, the token's hash and the dryad's key (OpenSSH ``type base64``)
    from a ``POST enrol/…`` body.

    :raises PeerWireError: for anything else.
    """
    if not isinstance(body, dict):
        raise PeerWireError("the body must be an object")
    holder, token_hash, key = body.get("holder"), body.get("token_hash"), body.get("public_key")
    if not isinstance(holder, str) or not holder:
        raise PeerWireError("holder must be a non-empty string (the holder's peer URL)")
    if not isinstance(token_hash, str) or not _HEX64.fullmatch(token_hash):
        raise PeerWireError("token_hash must be the token's SHA-256 in lower-case hex")
    if not isinstance(key, str) or len(key) > MAX_KEY or not _KEY.fullmatch(key):
        raise PeerWireError("public_key must be an OpenSSH public key: 'type base64'")
    return holder, token_hash, key


def enrolled(bound: bool) -> dict[str, Any]:
    return {"result": {"bound": bound}}


def read_enrolled(body: Any, where: str) -> bool:
    """Whether the leader bound the key (False: the token is not valid).

    :raises wire.RpcError: REFUSED as the leader refused it (another key is bound).
    :raises ConnectionError: for a body that is not an enrolment's answer.
    """
    raise_failure(body, where)
    result = body["result"]
    if not isinstance(result, dict) or type(result.get("bound")) is not bool:
        raise ConnectionError(f"{where} answered a malformed enrolment result")
    return bool(result["bound"])


def tunnel_order(worker: str, ssh_address: str) -> dict[str, Any]:
    return {"worker": worker, "ssh_address": ssh_address}


def read_tunnel_order(body: Any) -> tuple[WorkerUUID, str]:
    """The worker and its sshd's address from a ``PUT tunnels/…`` body.

    :raises PeerWireError: for anything else.
    """
    if not isinstance(body, dict):
        raise PeerWireError("the body must be an object")
    worker, address = body.get("worker"), body.get("ssh_address", "")
    if not isinstance(worker, str) or not isinstance(address, str):
        raise PeerWireError("worker and ssh_address must be strings")
    return WorkerUUID(worker), address


def read_tunnel_address(body: Any) -> tuple[str, int]:
    """The host and port a holder opened a tunnel on.

    :raises PeerWireError: for anything else.
    """
    if not isinstance(body, dict):
        raise PeerWireError("the answer must be an object")
    host, port = body.get("host"), body.get("port")
    if not isinstance(host, str) or not host or type(port) is not int or not 0 < port < 65536:
        raise PeerWireError("host must be a string and port one of 1-65535")
    return host, port
