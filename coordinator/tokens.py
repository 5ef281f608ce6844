"""API tokens: made at random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

PREFIX: Final = "brt_"  # makes a leaked token easy to spot in logs and secret scanners


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 suffices: tokens carry 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()
