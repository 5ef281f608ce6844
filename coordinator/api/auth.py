"""Who is calling: bearer tokens, or HTTP Basic ``NAME:TOKEN`` for the unmodified Go client."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Final

import anyio
from starlette.requests import HTTPConnection

from coordinator.domain.model import User
from coordinator.errors import Unauthorized
from coordinator.store import Store
from coordinator.tokens import hash_token

CACHE_SECONDS: Final = 5.0  # a revoked token stops working within this time


class Authenticator:
    """Resolves credentials to a user, with a short cache in front of the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, User | None]] = {}

    async def user(self, conn: HTTPConnection) -> User:
        """The authenticated user; raises ``Unauthorized`` without naming which part failed."""
        header = conn.headers.get("authorization")
        if not header:
            raise Unauthorized("authentication required: send 'Authorization: Bearer TOKEN'")
        scheme, _, credentials = header.partition(" ")
        name: str | None = None
        if scheme.lower() == "bearer":
            token = credentials.strip()
            if not token.isascii():
                raise Unauthorized("malformed Bearer token: not ASCII")
        elif scheme.lower() == "basic":
            name, token = _basic(credentials.strip())
        else:
            raise Unauthorized(f"unsupported authorization scheme {scheme!r}")
        user = await self._lookup(hash_token(token))
        if user is None or (name is not None and name != user.name):
            raise Unauthorized("invalid credentials")
        return user

    async def _lookup(self, token_hash: str) -> User | None:
        now = time.monotonic()
        hit = self._cache.get(token_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        user = await anyio.to_thread.run_sync(self._store.user_by_token, token_hash)
        if len(self._cache) > 10_000:  # bound memory against a flood of made-up tokens
            self._cache.clear()
        self._cache[token_hash] = (now + CACHE_SECONDS, user)
        return user


def _basic(credentials: str) -> tuple[str, str]:
    try:  # a header that is not ASCII makes b64decode raise a plain ValueError
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed Basic credentials: not base64 of UTF-8 NAME:TOKEN") from None
    name, sep, token = decoded.partition(":")
    if not sep:
        raise Unauthorized("malformed Basic credentials")
    return name, token
