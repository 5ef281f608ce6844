"""``params.only``: a query parameter read as Starlette reads it, on a fast path or not."""

from __future__ import annotations

from hypothesis import example, given, settings, strategies as st
from starlette.datastructures import QueryParams
from starlette.requests import Request

from coordinator.api import params

# Bytes a query string may carry, the separators and escapes weighted in.
_QUERY_BYTES = st.binary(max_size=40) | st.lists(
    st.sampled_from([b"wait", b"=", b"&", b";", b"%", b"+", b".", b"60", b"1.5", b"x", b"\xff"]),
    max_size=8,
).map(b"".join)


def _request(query: bytes) -> Request:
    return Request({"type": "http", "method": "POST", "query_string": query, "headers": []})


@settings(max_examples=500)
@given(_QUERY_BYTES)
@example(b"wait=60")
@example(b"wait=1.5")
@example(b"wait=")
@example(b"wait=60&wait=5")
@example(b"wait=%36%30")
@example(b"wait=6+0")
@example(b"waiting=60")
@example(b"wai")
@example(b"")
def test_the_parameter_is_what_starlette_reads(query: bytes) -> None:
    assert params.only(_request(query), "wait") == _request(query).query_params.get("wait")


class _Unparsed(Request):
    """A request whose query Starlette must not parse."""

    @property
    def query_params(self) -> QueryParams:
        raise AssertionError("the fast path parsed the query")


def test_a_plain_value_is_read_without_starlette_parsing_the_query() -> None:
    for query, value in ((b"wait=60", "60"), (b"wait=1.5", "1.5"), (b"wait=abc", "abc")):
        http = _Unparsed({"type": "http", "method": "POST", "query_string": query, "headers": []})
        assert params.only(http, "wait") == value
