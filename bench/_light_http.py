"""A minimal HTTP/1.1 load generator for the job-cycle bench: asyncio streams, one keep-alive
connection per lane, request bytes built up front, and only the status line, the headers and
a Content-Length body read back. It exists so that the bench's own CPU does not cap our rate
(httpx spends more CPU per request than our server does); it is no general client."""

from __future__ import annotations

import asyncio


class LightConnection:
    """One keep-alive HTTP/1.1 connection that sends POSTs and reads their answers in turn."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host = host
        self._port = port
        self._fixed = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def request(self, path: str, body: bytes = b"") -> bytes:
        """The whole request, to build once and send many times."""
        return (
            f"POST {path} HTTP/1.1\r\n".encode()
            + self._fixed
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def call(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` and return the answer's status and body."""
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not supported by this bench client")
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
            self._writer = self._reader = None
