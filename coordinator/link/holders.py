"""``Holders``: on the leader, which coordinator holds each dryad's link, and the leader's
calls to a dryad routed through it (docs/failover.md §scale-out, "step 2").

Soft state, kept in memory only: the leader's own sessions, and each follower's set of
links as it announced it last (again on every change and every ``REANNOUNCE`` seconds,
so a new leader learns them all within that time). A holder not heard from for ``ttl``
seconds is dropped with its links: a dead follower's dryads go through the link's grace
as a dropped local link does. A holder that refuses a connection (its process is gone) is
dropped at once, and the call goes to the newest claim left, if any; one that only times
out is kept (it may be loaded, not gone). A worker is connected while anyone holds it; the newest
claim serves its calls, so a dryad that re-linked elsewhere before its old connection
timed out is reached where it is now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from coordinator import wire
from coordinator.domain.ids import WorkerUUID
from coordinator.link import peerwire
from coordinator.link.calls import WireCalls
from coordinator.link.peerclient import PeerClient, PeerDown
from coordinator.link.registry import DryadLink, HasState, LinkService
from coordinator.wire import HealthReport, Method, WireError

logger = logging.getLogger(__name__)

LOCAL: Final = ""  # the holder name of this coordinator's own sessions
REANNOUNCE: Final = 2.0  # seconds between a holder's announcements when nothing changed
TTL: Final = 10.0  # seconds after which a silent holder's links count as dropped

P = TypeVar("P", bound=wire.Message)
R = TypeVar("R", bound="wire.Message | None")


class Holders(WireCalls):
    """Implements ``Dryads`` for the service and ``LinkService`` for the local link."""

    def __init__(
        self,
        local: DryadLink | None,
        peers: PeerClient,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service: LinkService | None = None  # set before any link comes up
        # Called when a connected worker's link moves to another holder (its running
        # job's tunnel follows it); run in ``run``'s task group.
        self.moved: Callable[[WorkerUUID], Coroutine[Any, Any, None]] | None = None
        self._tg: TaskGroup | None = None
        self._local = local
        self._peers = peers
        self._ttl = ttl
        self._clock = clock
        # Per worker, who claims its link, the newest claim last.
        self._claims: dict[WorkerUUID, list[str]] = {}
        # Workers whose last link was another coordinator's: their job's tunnel is still
        # recorded there, so their next link, even this coordinator's own, is a move.
        self._orphans: set[WorkerUUID] = set()
        # Per remote holder, its links and the number of each one's session there.
        self._held: dict[str, dict[WorkerUUID, int]] = {}
        self._heard: dict[str, float] = {}  # per remote holder, when it last announced

    async def aclose(self) -> None:
        """Close the peer client (the holders own it)."""
        await self._peers.aclose()

    # ---- where each link is ------------------------------------------------------------

    def holder(self, uuid: WorkerUUID) -> str | None:
        """The peer URL of the coordinator serving ``uuid``'s link, ``LOCAL`` for this one,
        None when nobody holds it."""
        claims = self._claims.get(uuid)
        return claims[-1] if claims else None

    def remote(self) -> Mapping[str, Mapping[WorkerUUID, int]]:
        """The links of each other coordinator, as announced."""
        return self._held

    def counts(self) -> dict[str, int]:
        """How many links each holder serves now (the newest claims), ``LOCAL`` included."""
        counts: dict[str, int] = {}
        for claims in self._claims.values():
            counts[claims[-1]] = counts.get(claims[-1], 0) + 1
        return counts

    def announce(self, holder: str, links: Mapping[WorkerUUID, int]) -> None:
        """``holder`` holds exactly ``links`` now (a follower's announcement), each with
        its session's number there: a new number is a new session, so the newest claim."""
        if holder == LOCAL:
            raise ValueError("a holder is named by its peer URL")
        before = self._held.get(holder, {})
        self._heard[holder] = self._clock()
        self._held[holder] = dict(links)
        if not links:
            del self._held[holder]
        for uuid, seq in links.items():  # in the announced order: logs read as sent
            if before.get(uuid) != seq:
                self._claim(uuid, holder)
        for uuid in sorted(before.keys() - links.keys()):
            self._unclaim(uuid, holder)

    def expire(self) -> None:
        """Drop the holders not heard from for ``ttl`` seconds, with their links."""
        limit = self._clock() - self._ttl
        for holder, heard in list(self._heard.items()):
            if heard < limit:
                self._forget(holder, f"silent for {self._ttl:.0f} s")

    def lost(self, holder: str, why: str) -> None:
        """``holder`` refused a connection (``PeerDown``): drop it with its links now,
        without waiting for its silence to last ``ttl`` (docs/failover.md §scale-out). An
        announcement from it later claims its links again."""
        if holder != LOCAL:
            detail = why.removeprefix(f"{holder} cannot be reached: ")  # PeerClient's words
            self._forget(holder, f"cannot be reached ({detail})")

    def _forget(self, holder: str, why: str) -> None:
        self._heard.pop(holder, None)
        gone = self._held.pop(holder, {})
        if gone:
            logger.warning("%s %s: its %d dryad links count as dropped", holder, why, len(gone))
        for uuid in sorted(gone):
            self._unclaim(uuid, holder)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Expire silent holders until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            try:
                while True:
                    await anyio.sleep(self._ttl / 4)
                    self.expire()
            finally:
                self._tg = None

    def _claim(self, uuid: WorkerUUID, holder: str) -> None:
        claims = self._claims.setdefault(uuid, [])
        before = claims[-1] if claims else None
        if holder in claims:
            claims.remove(holder)
        claims.append(holder)
        if before is None:
            orphan = uuid in self._orphans
            self._orphans.discard(uuid)
            self._require_service().link_up(uuid)
            # A remote first claim: a running job's tunnel opened here (a new leader's
            # start); an orphan's: its tunnel is on the holder that lost it.
            if holder != LOCAL or orphan:
                self._moved(uuid)
        elif before != holder:
            self._moved(uuid)

    def _unclaim(self, uuid: WorkerUUID, holder: str) -> None:
        claims = self._claims.get(uuid)
        if not claims or holder not in claims:
            return
        newest = claims[-1] == holder
        claims.remove(holder)
        if not claims:
            del self._claims[uuid]
            if holder != LOCAL:
                self._orphans.add(uuid)
            self._require_service().link_down(uuid)
        elif newest:
            self._moved(uuid)

    def _moved(self, uuid: WorkerUUID) -> None:
        logger.info("worker %s: its link is held by %s now", uuid, self.holder(uuid) or "us")
        if self.moved is not None and self._tg is not None:
            self._tg.start_soon(self.moved, uuid)

    def _require_service(self) -> LinkService:
        if self.service is None:
            raise RuntimeError("Holders.service must be set before links come up")
        return self.service

    # ---- LinkService: the local link's sessions and calls -------------------------------

    def link_up(self, uuid: WorkerUUID) -> None:
        self._claim(uuid, LOCAL)

    def link_down(self, uuid: WorkerUUID) -> None:
        self._unclaim(uuid, LOCAL)

    async def register(
        self, caps: Mapping[str, str], ssh_address: str, host_keys: tuple[str, ...] = ()
    ) -> HasState:
        return await self._require_service().register(caps, ssh_address, host_keys)

    async def set_fail(self, uuid: WorkerUUID, reason: str) -> None:
        await self._require_service().set_fail(uuid, reason)

    async def report_health(self, uuid: WorkerUUID, report: HealthReport) -> None:
        await self._require_service().report_health(uuid, report)

    async def button(self, uuid: WorkerUUID, number: int) -> None:
        await self._require_service().button(uuid, number)

    # ---- Dryads (the calls: calls.WireCalls), through the holder -----------------------

    async def _call(self, worker: WorkerUUID, method: Method[P, R], params: P) -> R:
        tried: set[str] = set()
        while True:
            holder = self.holder(worker)
            if holder is None:
                raise ConnectionError(f"dryad {worker} is not connected")
            if holder == LOCAL:
                if self._local is None:
                    raise ConnectionError("dryad link is not running")
                return await self._local.ask(worker, method, params)
            try:
                return await self.through(holder, worker, method, params)
            except PeerDown as exc:
                # Not connected, so not performed: the next claim (the dryad re-linked
                # there) may serve it. A timeout may have been performed: never repeated.
                tried.add(holder)
                self.lost(holder, str(exc))
                after = self.holder(worker)
                if after is None or after in tried:
                    raise

    async def through(self, holder: str, worker: WorkerUUID, method: Method[P, R], params: P) -> R:
        """``method`` on ``worker``'s dryad through the coordinator at ``holder``.

        :raises PeerDown: when no connection to ``holder`` could be made.
        :raises ConnectionError: when ``holder``'s answer was lost, the dryad is not
            connected there, or the answer is not the row's result.
        :raises TimeoutError, wire.RpcError: as the dryad answered the holder.
        """
        timeout = method.timeout or 0.0
        status, body = await self._peers.send(
            "POST", holder, f"{peerwire.DRYADS}{worker}/{method}", params.to_wire(), timeout
        )
        where = f"{holder} (holding dryad {worker}'s link)"
        if status != 200:  # refused the call itself (the secret, the route, the params)
            raise ConnectionError(f"{where} answered {status}: {str(body)[:200]}")
        peerwire.raise_failure(body, where)
        result: Any = body["result"]
        try:
            return method.result.from_wire(result)
        except WireError as exc:
            raise ConnectionError(f"{where} answered a wrong {method} result: {exc}") from None
