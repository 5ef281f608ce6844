"""Where the CLI finds the coordinator and its token: file, then environment, then flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8487"


class ConfigError(Exception):
    """An unreadable or malformed configuration (exit code 2)."""


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None

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
    if given or path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for key in ("url", "token"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} must be a string")
    url = getattr(args, "url", None) or os.environ.get("BORUTA_URL") or data.get("url")
    token = getattr(args, "token", None) or os.environ.get("BORUTA_TOKEN") or data.get("token")
    return Config(str(url or DEFAULT_URL), token)
