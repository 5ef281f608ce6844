"""Keeps secrets given in query strings (``?token=``) out of every log line."""

from __future__ import annotations

import logging
import re
from typing import Final
from urllib.parse import unquote_plus

# Names whose values are secrets, compared after percent-decoding: the server decodes
# ``%74oken`` to ``token`` and takes it as a credential, so the log must as well.
SECRET_NAMES: Final = frozenset({"token", "access_token"})
REDACTED: Final = "REDACTED"
_QUERY: Final = re.compile(r"\?([^\s\"'#]*)")


def redact_query_secrets(text: str) -> str:
    """``text`` with the value of every secret query parameter replaced by ``REDACTED``."""
    if "?" not in text:
        return text
    return _QUERY.sub(lambda m: "?" + _redact_pairs(m.group(1)), text)


def _redact_pairs(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_NAMES:
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "&".join(pairs)


class RedactTokens(logging.Filter):
    """Redacts query secrets in a record's formatted message before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatted first: a secret may sit in the message, in an argument, or across both.
        message = record.getMessage()
        redacted = redact_query_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logs() -> None:
    """Install ``RedactTokens`` once on uvicorn's access logger (it logs the query string
    and does not propagate) and on every handler of the root logger (everything else)."""
    targets: list[logging.Filterer] = [logging.getLogger("uvicorn.access")]
    targets += logging.getLogger().handlers
    for target in targets:
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())
