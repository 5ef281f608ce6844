"""The size limits of text that reaches the coordinator, and the checks of such text.

One place for the HTTP API, the dryad link and the command line
(docs/boruta-api.md §limits): the API answers 400 and the link a JSON-RPC error for text
over a limit or text that cannot be encoded as UTF-8 (a lone surrogate, which JSON's
``"\\ud800"`` escape and ``surrogateescape``'d command-line bytes both produce). The
dryad, which imports this module too, clips what it sends to the same limits.
"""

from __future__ import annotations

import re
from typing import Final

MAX_CAPS: Final = 64  # capabilities of one request, worker or filter
MAX_CAP_KEY: Final = 64  # characters
MAX_CAP_VALUE: Final = 256  # characters
MAX_TEXT: Final = 1024  # a reason, message, check detail or other free text
MAX_NAME: Final = 64  # a user, group or healthcheck name
MAX_GROUPS: Final = 64  # groups of one worker or user, or in one filter
MAX_LIST: Final = 1024  # items in one list of a list filter (IDs, Priorities, States)
MAX_CHECKS: Final = 64  # healthchecks in one report
MAX_URL: Final = 2048  # a webhook URL
MAX_DEPTH: Final = 32  # nesting of JSON arrays and objects in one body or link message

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Names go into logs and the CLI's tab-separated listing: no control characters (tab and
# newline among them). Groups may hold spaces, as the original's did ("Malinowy Chruśniak").
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A user name is also the NAME of Basic ``NAME:TOKEN`` and an argument of the CLI.
_USER: Final = re.compile(r"[^\x00-\x20\x7f-\x9f,:]+")


class TextRefused(ValueError):
    """Text the coordinator does not take; ``str()`` says which field and why."""

    code: str = ""


class NotUtf8(TextRefused):
    """Text holding a lone surrogate: it cannot be encoded as UTF-8, stored or shown."""

    code = "invalid-text"


class OverLimit(TextRefused):
    """Text, or a collection, over its size limit."""

    code = "over-limit"


def text(value: str, field: str, limit: int = MAX_TEXT) -> str:
    """``value`` if it is valid UTF-8 text of at most ``limit`` characters."""
    if _SURROGATE.search(value):
        raise NotUtf8(f"{field} is not valid UTF-8 text (it holds a lone surrogate)")
    if len(value) > limit:
        raise OverLimit(f"{field} is longer than {limit} characters")
    return value


def name(value: str, field: str) -> str:
    """A group (or healthcheck) name: 1 to ``MAX_NAME`` characters, no control character."""
    text(value, field, MAX_NAME)
    if not value or _CONTROL.search(value):
        raise TextRefused(f"{field} must be 1 to {MAX_NAME} characters, no control characters")
    return value


def user_name(value: str, field: str = "user name") -> str:
    """A user name: 1 to ``MAX_NAME`` characters, none of them a space, a control
    character, ``,`` or ``:`` (the separator of Basic credentials)."""
    text(value, field, MAX_NAME)
    if not _USER.fullmatch(value):
        raise TextRefused(
            f"{field} must be 1 to {MAX_NAME} characters without spaces, control"
            " characters, ',' or ':'"
        )
    return value


def caps(value: dict[str, str], field: str = "Caps") -> dict[str, str]:
    """Capabilities within ``MAX_CAPS`` entries, each key and value valid and in size."""
    count(len(value), field, MAX_CAPS)
    for key, item in value.items():
        text(key, f"{field} key", MAX_CAP_KEY)
        text(item, f"{field}[{key!r}]", MAX_CAP_VALUE)
    return value


def count(n: int, field: str, limit: int) -> None:
    if n > limit:
        raise OverLimit(f"{field} has more than {limit} items")


def clip(value: str, limit: int = MAX_TEXT) -> str:
    """``value`` made sendable: lone surrogates replaced, cut to ``limit`` characters."""
    value = scrub(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def scrub(value: str) -> str:
    """``value`` with each lone surrogate replaced by U+FFFD, the replacement character."""
    return _SURROGATE.sub("\ufffd", value)


def has_surrogate(value: str) -> bool:
    return _SURROGATE.search(value) is not None
