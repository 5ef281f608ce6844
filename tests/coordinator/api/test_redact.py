"""Query-string secrets are redacted after decoding, whatever the spelling, in every log."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, strategies as st

from coordinator.api.redact import RedactTokens, redact_logs, redact_query_secrets

SECRET = "brt_s3cr3tvalue"


def _spellings(name: str) -> st.SearchStrategy[str]:
    """``name`` with any of its letters percent-encoded, in either case of hex digit."""
    letter = [st.sampled_from([c, c.upper(), f"%{ord(c):02x}", f"%{ord(c):02X}"]) for c in name]
    return st.tuples(*letter).map("".join)


@given(
    spelling=_spellings("token"),
    before=st.sampled_from(["", "a=1&", "follow=1&after=3&"]),
    after=st.sampled_from(["", "&x=2", "&token2=keep"]),
)
def test_a_token_spelled_any_way_is_redacted(spelling: str, before: str, after: str) -> None:
    line = f'1.2.3.4 "GET /api/v1/events?{before}{spelling}={SECRET}{after} HTTP/1.1" 200'
    redacted = redact_query_secrets(line)
    assert SECRET not in redacted
    assert f"{spelling}=REDACTED" in redacted
    assert before in redacted and after in redacted  # nothing else changed


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Z", "Cc"), blacklist_characters="&=?#\"'"),
    min_size=1,
    max_size=12,
)


@given(st.one_of(names, _spellings("token"), _spellings("access_token")))
def test_exactly_the_names_the_server_would_decode_to_a_secret_are_redacted(name: str) -> None:
    query = f"{name}=value"
    ((decoded, _),) = parse_qsl(query, keep_blank_values=True)
    redacted = redact_query_secrets(f"/e?{query}")
    is_secret = decoded.strip().lower() in {"token", "access_token"}
    assert redacted == (f"/e?{name}=REDACTED" if is_secret else f"/e?{query}")


@pytest.mark.parametrize(
    ("msg", "args"),
    [
        ('%s "%s %s"', ("1.2.3.4", "GET", f"/e?a=1&%74oken={SECRET}")),
        (f"GET /e?token={SECRET} failed", ()),
    ],
)
def test_the_filter_redacts_messages_and_arguments(msg: str, args: tuple[str, ...]) -> None:
    record = logging.LogRecord("any", logging.INFO, "", 0, msg, args, None)
    assert RedactTokens().filter(record)
    assert SECRET not in record.getMessage() and "REDACTED" in record.getMessage()


def test_installed_on_the_root_handlers_it_covers_every_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redact_logs()
    redact_logs()  # once per target
    assert sum(isinstance(f, RedactTokens) for f in caplog.handler.filters) == 1
    logging.getLogger("coordinator.anything").warning("GET /x?token=%s", SECRET)
    assert SECRET not in caplog.text and "token=REDACTED" in caplog.text
