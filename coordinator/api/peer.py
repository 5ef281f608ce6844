"""The leader's peer routes: followers announce the dryad links they hold, and pass on
their dryads' calls (docs/failover.md §scale-out, "step 2").

Only a request the peer gate admitted with the farm's secret (``PEER_SCOPE`` in its
scope) is served; anyone else gets 403, whatever the path under ``/peer/``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator import wire
from coordinator.api.bodies import read_json
from coordinator.api.v1 import json_response
from coordinator.errors import BorutaError, Conflict, Forbidden, InvalidRequest, RouteNotFound
from coordinator.link import peerwire
from coordinator.link.enrolment import Enrolment
from coordinator.link.holders import Holders
from coordinator.link.registry import PanelSink
from coordinator.link.server import worker_uuid
from coordinator.service.steps import wire_state
from coordinator.wire import RpcError, WireError

logger = logging.getLogger("coordinator")

PEER_SCOPE: Final = "boruta.peer"  # set by httpd.peergate for a request with the secret
MAX_BODY: Final = 4 << 20  # bytes: an announcement of many thousand links


class PeerRoutes:
    """``PUT /peer/v1/holders``, ``POST /peer/v1/links/{uuid}/{method}`` and ``POST
    /peer/v1/enrol/{uuid}``."""

    def __init__(self, holders: Holders, panels: PanelSink, enrolment: Enrolment) -> None:
        self._holders = holders
        self._panels = panels
        self._enrolment = enrolment

    def routes(self) -> list[Route]:
        return [
            Route(peerwire.HOLDERS, self.announce, methods=["PUT"]),
            Route(peerwire.LINKS + "{uuid}/{method}", self.link_call, methods=["POST"]),
            Route(peerwire.ENROL + "{uuid}", self.enrol, methods=["POST"]),
            Route(peerwire.PREFIX + "{rest:path}", self.unknown, methods=["GET", "PUT", "POST"]),
        ]

    async def announce(self, http: HttpRequest) -> Response:
        _admitted(http)
        try:
            holder, links = peerwire.read_announcement(await read_json(http, MAX_BODY))
        except peerwire.PeerWireError as exc:
            raise InvalidRequest(f"announcement: {exc}") from None
        for uuid in links:
            if worker_uuid(uuid) is None:
                raise InvalidRequest(f"announcement: {uuid[:64]!r} is not a worker UUID")
        self._holders.announce(holder, links)
        return Response(status_code=204)

    async def link_call(self, http: HttpRequest) -> Response:
        """A dryad's call its holder passes on; the answer is the link's result or error."""
        _admitted(http)
        uuid = worker_uuid(http.path_params["uuid"])
        row = peerwire.TO_LEADER.get(http.path_params["method"])
        if uuid is None or row is None:
            raise RouteNotFound(http.url.path)
        try:
            _, raw = peerwire.read_link_call(await read_json(http, MAX_BODY))
            params = row.params.from_wire(raw)
        except (peerwire.PeerWireError, WireError) as exc:
            raise InvalidRequest(f"{row} from a holder: {exc}") from None
        try:
            result = await self._perform(uuid, row, params)
        except BorutaError as exc:  # as the link itself answers a refusal
            return json_response(peerwire.failure(RpcError(wire.REFUSED, exc.message)))
        except RpcError as exc:
            return json_response(peerwire.failure(exc))
        return json_response({"result": wire.encode(result)})

    async def enrol(self, http: HttpRequest) -> Response:
        """A dryad's enrolment its holder passes on: the token checked, the key bound here
        (under this leader's fence); a refusal as the link answers it, a failure to decide
        (the database) as the HTTP error it is, so the holder says "try again"."""
        _admitted(http)
        uuid = worker_uuid(http.path_params["uuid"])
        if uuid is None:
            raise InvalidRequest(f"{http.path_params['uuid'][:64]!r} is not a worker UUID")
        try:
            holder, token_hash, key = peerwire.read_enrolment(await read_json(http, MAX_BODY))
        except peerwire.PeerWireError as exc:
            raise InvalidRequest(f"enrolment from a holder: {exc}") from None
        try:
            bound = await self._enrolment.enrol(uuid, token_hash, key)
        except Conflict as exc:  # another key is bound to this UUID
            return json_response(peerwire.failure(RpcError(wire.REFUSED, exc.message)))
        if bound:
            logger.info("worker %s: enrolled through %s", uuid, holder)
        return json_response(peerwire.enrolled(bound))

    async def unknown(self, http: HttpRequest) -> Response:
        _admitted(http)
        raise RouteNotFound(http.url.path)

    async def _perform(self, uuid: Any, row: Any, params: Any) -> wire.Message | None:
        holders = self._holders
        if row is wire.REGISTER:
            reg: wire.Registration = params
            if reg.caps.get("UUID", "") != uuid:
                raise RpcError(wire.REFUSED, f"caps UUID is not this dryad's {uuid}")
            # The holder completed the address and kept the valid host keys.
            worker = await holders.register(reg.caps, reg.ssh_address, reg.host_keys)
            return wire.Registered(wire_state(worker.state))
        if row is wire.SET_FAIL:
            await holders.set_fail(uuid, params.reason)
        elif row is wire.HEALTH:
            await holders.report_health(uuid, params)
        elif row is wire.BUTTON:
            await holders.button(uuid, params.button)
        else:  # wire.PANEL
            await self._panels.update(uuid, params)
        return None


def _admitted(http: HttpRequest) -> None:
    if not http.scope.get(PEER_SCOPE):
        raise Forbidden("peer routes are for the farm's coordinators")
