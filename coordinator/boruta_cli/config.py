"""Where the CLI finds the coordinator and its token: file, then environment, then flags."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:8487"
URL_ENV, TOKEN_ENV = "BORUTA_URL", "BORUTA_TOKEN"


class ConfigError(Exception):
    """An unreadable or malformed configuration (exit code 2)."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None
    token_from: str = field(default="", compare=False)  # a flag, a variable or a file
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:  # never the token
        return f"Config(url={self.url!r}, token={'set' if self.token else 'unset'})"


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "boruta" / "config.toml"


def load(args: Any) -> Config:
    """The file (``--config``, else the default if it exists), then env, then flags."""
    given = getattr(args, "config", None)
    path = Path(given) if given else default_path()
    data: dict[str, Any] = {}
    warnings: list[str] = []
    if given or path.exists():
        data = _read(path)
        warnings += _exposed(path)
    for key in ("url", "token"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} must be a string")
    url, url_from = _first(
        ("--url", getattr(args, "url", None)),
        (URL_ENV, os.environ.get(URL_ENV)),
        (str(path), data.get("url")),
    )
    token, token_from = _first(
        ("--token", getattr(args, "token", None)),
        (TOKEN_ENV, os.environ.get(TOKEN_ENV)),
        (str(path), data.get("token")),
    )
    url = check_url(url, url_from) if url else DEFAULT_URL
    return Config(url, token, token_from, tuple(warnings))


def how_to_set_token() -> str:
    """The three places a token may come from, named exactly."""
    return (
        f'no API token: set {TOKEN_ENV}=brt_…, or put token = "brt_…" in '
        f"{default_path()} (chmod 600), or pass --token brt_…; an admin makes one with "
        "`boruta-coordinator user add NAME` on the coordinator's host"
    )


def check_url(url: str, where: str) -> str:
    """An ``http://`` or ``https://`` URL with a host; anything else is a usage error,
    since httpx would only call it unreachable."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        raise ConfigError(f"coordinator URL {url!r} (from {where}) is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigError(
            f"coordinator URL {url!r} (from {where}) needs http:// or https://, "
            f"e.g. http://{url.split('://')[-1] or 'boruta.lab:8487'}"
        )
    if not parts.hostname or any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"coordinator URL {url!r} (from {where}) has no valid host")
    if parts.query or parts.fragment:
        raise ConfigError(f"coordinator URL {url!r} (from {where}) may not carry ? or #")
    try:
        # What the client will send to, with httpx's own checks; reading the host decodes
        # IDNA labels, which fails for a malformed one ("xn--") only then.
        httpx.URL(url).host  # noqa: B018
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ConfigError(f"coordinator URL {url!r} (from {where}) is not a URL: {exc}") from None
    return url


def _first(*sources: tuple[str, str | None]) -> tuple[str | None, str]:
    for where, value in sources:
        if value:
            return value, where
    return None, ""


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _exposed(path: Path) -> list[str]:
    """A warning when others may read (or change) the file that may hold the token."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if not mode & 0o077:
        return []
    return [
        f"warning: {path} is open to others (mode {mode:04o}): they may read your token; "
        f"make it private: chmod 600 {path}"
    ]
