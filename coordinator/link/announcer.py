"""``LeaderLinks``: on a follower, the dryad link's service is the leader, reached over
the peer routes (docs/failover.md §scale-out, "step 2").

The follower's sessions are announced as one set (``PUT /peer/v1/holders``): at once
after each change, and every ``REANNOUNCE`` seconds, so a new leader learns them within
that time and a lost announcement is repaired by the next. The dryads' calls (register,
set_fail, health, button, panel) go to the leader as the link's own params and come
back as its result or its refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import anyio
from anyio.abc import TaskStatus

from coordinator import wire
from coordinator.domain.ids import WorkerUUID
from coordinator.domain.states import WorkerState
from coordinator.link import peerwire
from coordinator.link.holders import REANNOUNCE
from coordinator.link.peerclient import PeerClient, PeerUnreachable
from coordinator.wire import HealthReport, Method, RpcError, WireError

logger = logging.getLogger(__name__)

# Seconds the leader has for an enrolment: with the peer call's margin, its answer (or
# the failure's) still reaches the dryad within its own 30 s for ``enrol``.
ENROL_TIMEOUT: Final = 20.0

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")

_DOMAIN_STATES = {
    wire.WorkerState.MAINTENANCE: WorkerState.MAINTENANCE,
    wire.WorkerState.IDLE: WorkerState.IDLE,
    wire.WorkerState.RUNNING: WorkerState.RUN,
    wire.WorkerState.FAILED: WorkerState.FAIL,
    wire.WorkerState.PREPARE: WorkerState.PREPARE,
    wire.WorkerState.BUSY: WorkerState.BUSY,
}


@dataclass(frozen=True, slots=True)
class Registered:
    """The leader's answer to a registration, in the domain's words."""

    state: WorkerState


class LeaderLinks:
    """Implements ``LinkService`` (and the link's panel sink) by calling the leader.

    ``own_url`` is where the leader reaches this follower's peer routes; ``leader`` gives
    the leader's URL as far as it is known (None while nobody serves).
    """

    def __init__(
        self,
        peers: PeerClient,
        own_url: str,
        leader: Callable[[], str | None],
        every: float = REANNOUNCE,
    ) -> None:
        self._peers = peers
        self._own = own_url
        self._leader = leader
        self._every = every
        # Each link's session number: a dryad's new session here is a new claim for the
        # leader, even if the old one has not ended yet (ordered: as they came up).
        self._links: dict[WorkerUUID, int] = {}
        self._sessions = 0
        self._changed = anyio.Event()
        self.announced: tuple[str, dict[WorkerUUID, int]] | None = None  # last one taken
        self._said = ""

    # ---- the links, announced -------------------------------------------------------

    def link_up(self, uuid: WorkerUUID) -> None:
        self._sessions += 1
        self._links.pop(uuid, None)
        self._links[uuid] = self._sessions
        self._changed.set()

    def link_down(self, uuid: WorkerUUID) -> None:
        self._links.pop(uuid, None)
        self._changed.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Announce the links to the leader until cancelled."""
        task_status.started()
        while True:
            self._changed = anyio.Event()
            await self.announce()
            with anyio.move_on_after(self._every):
                await self._changed.wait()

    async def announce(self) -> bool:
        """Send the whole set once; whether the leader took it."""
        leader = self._leader()
        if leader is None:
            return False
        links = dict(self._links)
        try:
            status, body = await self._peers.send(
                "PUT", leader, peerwire.HOLDERS, peerwire.announcement(self._own, links), 10.0
            )
        except PeerUnreachable as exc:
            self._say(f"dryad links not announced: {exc}")
            return False
        if status != 204:
            self._say(f"dryad links not announced: {leader} answered {status}: {body}")
            return False
        self._say("")
        self.announced = (leader, links)
        return True

    def _say(self, news: str) -> None:
        """Log a problem once, and its end."""
        if news != self._said:
            if news:
                logger.warning("%s", news)
            else:
                logger.info("dryad links announced to the leader again")
            self._said = news

    # ---- the dryads' calls, passed on -------------------------------------------------

    async def register(
        self, caps: Mapping[str, str], ssh_address: str, host_keys: tuple[str, ...] = ()
    ) -> Registered:
        uuid = WorkerUUID(caps.get("UUID", ""))
        reg = wire.Registration(dict(caps), ssh_address, host_keys=host_keys)
        answer = await self._pass(uuid, wire.REGISTER, reg)
        return Registered(_DOMAIN_STATES[answer.state])

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        await self._pass(uuid, wire.SET_FAIL, wire.SetFail(reason))

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None:
        await self._pass(uuid, wire.HEALTH, report)

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        await self._pass(uuid, wire.BUTTON, wire.Button(number))

    async def update(self, worker: WorkerUUID, panel: wire.Panel, /) -> None:
        """A board's panel, for the leader's dashboards."""
        await self._pass(worker, wire.PANEL, panel)

    async def enrol(self, uuid: WorkerUUID, token_hash: str, public_key: str) -> bool:
        """``link.enrolment.Enrolment`` by the leader: a follower writes nothing of the
        farm's itself, so a follower cut off from the database while a new leader starts
        binds no key behind its fence.

        :raises wire.RpcError: UNAVAILABLE when the leader cannot be reached or take it
            (the dryad tries again with its usual back-off); REFUSED as the leader refused
            it (the UUID is bound to another key).
        """
        leader = self._leader()
        if leader is None:
            raise RpcError(wire.UNAVAILABLE, "no coordinator serves the farm now: try again")
        body = peerwire.enrolment(self._own, token_hash, public_key)
        try:
            status, answer = await self._peers.send(
                "POST", leader, f"{peerwire.ENROL}{uuid}", body, ENROL_TIMEOUT
            )
            if status != 200:
                raise ConnectionError(f"the leader answered {status}: {str(answer)[:200]}")
            return peerwire.read_enrolled(answer, "the leader")
        except RpcError:
            raise
        except ConnectionError as exc:
            raise RpcError(
                wire.UNAVAILABLE, f"the farm's leader cannot take the enrolment: {exc}"
            ) from None

    async def _pass(self, uuid: WorkerUUID, method: Method[P, R], params: P) -> R:
        """``method`` performed by the leader; a failure is the link's refusal (the dryad
        tries again as after any refusal), with the reason.

        :raises wire.RpcError: REFUSED when the leader refused or cannot be reached.
        """
        leader = self._leader()
        if leader is None:
            raise RpcError(wire.REFUSED, "no coordinator serves the farm now: try again")
        body: Any = peerwire.link_call(self._own, params.to_wire())
        path = f"{peerwire.LINKS}{uuid}/{method}"
        try:
            status, answer = await self._peers.send("POST", leader, path, body, 30.0)
            if status != 200:
                raise ConnectionError(f"the leader answered {status}: {str(answer)[:200]}")
            peerwire.raise_failure(answer, "the leader")
            return method.result.from_wire(answer["result"])
        except RpcError:
            raise
        except (ConnectionError, TimeoutError, WireError) as exc:
            raise RpcError(wire.REFUSED, f"the farm's leader cannot take {method}: {exc}") from None
