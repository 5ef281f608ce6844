"""ThreadBridge: the blocking client and the CLI, in a worker thread, onto the test's app."""

from __future__ import annotations

import anyio
import anyio.from_thread
import httpx


class ThreadBridge(httpx.BaseTransport):
    """A blocking transport onto an ASGI app running in the test's event loop: the sync
    client and the CLI run in a worker thread (``anyio.to_thread``) and call back into it."""

    def __init__(self, app: object) -> None:
        self._app = httpx.ASGITransport(app)  # type: ignore[arg-type]
        self.acquiring = anyio.Event()  # set when an acquire_worker call goes out

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            if request.url.path.endswith("/acquire_worker"):
                self.acquiring.set()
            answer = await self._app.handle_async_request(request)
            body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return anyio.from_thread.run(send)
