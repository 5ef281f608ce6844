"""Request bodies within the size limit, sent as JSON: read once, refused with a clear 4xx.

A declared ``Content-Length`` over the limit is refused before anything is read; a
chunked body is counted as it arrives and refused at the first byte over the limit.
``Content-Type`` may be absent, JSON, or the form type ``curl -d`` sends by default;
anything else, or a charset other than UTF-8, is 415 (docs/boruta-api.md §limits).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request

from coordinator import boruta_json as bj
from coordinator.errors import BodyTooLarge, MalformedInput, UnsupportedMediaType

# curl -d sends this unless told otherwise, and the README's examples rely on it.
_CURL_DEFAULT: Final = "application/x-www-form-urlencoded"
_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii"})


def check_content_type(header: str | None) -> None:
    """Refuse a body that says it is not JSON (``UnsupportedMediaType``)."""
    if header is None or not header.strip():
        return
    kind, *params = (part.strip() for part in header.split(";"))
    kind = kind.lower()
    if kind not in ("application/json", _CURL_DEFAULT) and not (
        kind.startswith("application/") and kind.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Content-Type {header!r} is not JSON: send application/json (or none)"
        )
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in _CHARSETS:
            raise UnsupportedMediaType(f"Content-Type {header!r}: the body must be UTF-8")


async def read_body(http: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (``BodyTooLarge`` past it)."""
    declared = http.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise MalformedInput(f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(http: Request, limit: int, *, optional: bool = False) -> Any:
    """The body as JSON (``bj.parse_body``); ``None`` for an empty one when ``optional``."""
    raw = await read_body(http, limit)
    if optional and not raw.strip():
        return None
    check_content_type(http.headers.get("content-type"))
    return bj.parse_body(raw)
