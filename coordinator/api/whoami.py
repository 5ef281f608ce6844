"""``GET /api/v1/whoami``: whom the caller's credentials name, and whether an admin."""

from __future__ import annotations

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator.api.auth import Authenticator
from coordinator.api.v1 import json_response


class WhoAmI:
    """Lets a client (the dashboard, a script) learn what its token may do before it tries:
    the page shows admin buttons only to admins."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    def routes(self) -> list[Route]:
        return [Route("/api/v1/whoami", self.whoami, methods=["GET"])]

    async def whoami(self, http: HttpRequest) -> Response:
        """``{"Name", "Admin", "Groups"}`` of the authenticated user; never the token."""
        user = await self._auth.user(http)
        body = {"Name": user.name, "Admin": user.admin, "Groups": list(user.groups)}
        # Private to this token: no cache may keep it or hand it to another caller.
        return json_response(body, headers={"Cache-Control": "no-store"})
