"""The dashboard at ``/``: its page and static files, and each worker's latest panel."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from coordinator.api.auth import Authenticator
from coordinator.api.v1 import json_response, parse_worker_uuid
from coordinator.boruta_json import format_time
from coordinator.errors import NotFound
from coordinator.feed.panels import Panels, PanelView
from coordinator.feed.render import panel_json
from coordinator.service.operations import Service

FILES: Final = Path(__file__).with_name("dashboard")
_JS: Final = "text/javascript; charset=utf-8"
# The page and its modules: dashboard.js imports the others (api, format, rack, actions,
# queue, history), each one part of the page.
STATIC: Final = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": _JS,
    "api.js": _JS,
    "format.js": _JS,
    "rack.js": _JS,
    "actions.js": _JS,
    "queue.js": _JS,
    "history.js": _JS,
}
# Everything comes from this origin; panels arrive as data: URLs. The page keeps the API
# token in sessionStorage, so no script from elsewhere may ever run in it.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # a new coordinator's page is fetched on the next load
}


class Dashboard:
    """Serves the page and the panels; the page itself calls the API with the user's token."""

    def __init__(self, service: Service, panels: Panels, auth: Authenticator) -> None:
        self._service = service
        self._panels = panels
        self._auth = auth
        # Small files, read once: the page must not depend on the disk after start-up.
        self._files = {name: (FILES / name).read_bytes() for name in STATIC}

    def routes(self) -> list[Route]:
        p = "/api/v1/workers/{uuid}"
        return [
            Route("/", self.page, methods=["GET"]),
            Route("/dashboard/{name}", self.static, methods=["GET"]),
            Route(f"{p}/panel", self.panel, methods=["GET"]),
            Route(f"{p}/panel.png", self.panel_png, methods=["GET"]),
        ]

    async def page(self, http: HttpRequest) -> Response:
        return self._file("index.html")

    async def static(self, http: HttpRequest) -> Response:
        name = http.path_params["name"]
        if name not in STATIC:
            raise NotFound(f"/dashboard/{name}")
        return self._file(name)

    def _file(self, name: str) -> Response:
        return Response(self._files[name], media_type=STATIC[name], headers=SECURITY_HEADERS)

    async def panel(self, http: HttpRequest) -> Response:
        """``{"worker", "screen": base64 PNG, "leds": [[r,g,b],[r,g,b]], "at"}``."""
        view = await self._view(http)
        return json_response(panel_json(view), headers={"Cache-Control": "no-store"})

    async def panel_png(self, http: HttpRequest) -> Response:
        view = await self._view(http)
        at = format_time(view.at, millis=True)  # as the panel's JSON has it
        headers = {"Cache-Control": "no-store", "Boruta-Panel-At": at}
        return Response(view.png, media_type="image/png", headers=headers)

    async def _view(self, http: HttpRequest) -> PanelView:
        await self._auth.user(http)
        uuid = parse_worker_uuid(http.path_params["uuid"])
        self._service.get_worker(uuid)  # an unknown worker is 404 as everywhere in the API
        view = self._panels.get(uuid)
        if view is None:
            raise NotFound(f"panel of worker {uuid}")
        return view
