"""Hostile input to the ``boruta`` command's argument parsing: every text is either taken
as what it plainly says or refused with a message that says what is valid."""

from __future__ import annotations

import argparse
from datetime import datetime

import httpx
import pytest
from hypothesis import example, given, strategies as st

from coordinator.boruta_cli import main
from coordinator.boruta_cli.commands import UsageError, parse_caps, parse_when
from coordinator.boruta_cli.config import ConfigError, check_url
from coordinator.boruta_cli.parser import STATE_WORDS, priority, request_state
from coordinator.client import Client
from coordinator.domain.states import RequestState

texts = st.text(max_size=40)
words = st.text(
    st.characters(blacklist_characters=",=", blacklist_categories=["Cs", "Z", "Cc"]),
    min_size=1,
    max_size=12,
)


@given(texts)
@example("1_6")
@example("+3")
@example("٣")  # an Arabic-Indic three: int() takes it
@example(" 16 ")
@example("17")
def test_a_priority_is_1_to_16_in_ascii_digits_or_refused(text: str) -> None:
    try:
        value = priority(text)
    except argparse.ArgumentTypeError as exc:
        assert "priority must be 1..16" in str(exc)
    else:
        assert 1 <= value <= 16 and text.strip().isascii() and int(text) == value


@given(st.integers(1, 16), st.sampled_from(["", " ", "\t"]))
def test_every_priority_in_range_is_taken(value: int, pad: str) -> None:
    assert priority(f"{pad}{value}{pad}") == value


@given(texts)
@example("in progress")
@example("IN_PROGRESS")
def test_a_state_is_one_of_the_request_states_or_refused_with_the_list(text: str) -> None:
    try:
        state = request_state(text)
    except argparse.ArgumentTypeError as exc:
        assert ", ".join(STATE_WORDS) in str(exc)
    else:
        assert isinstance(state, RequestState)


@given(st.sampled_from(list(RequestState)), st.sampled_from([str.lower, str.upper, str.title]))
def test_every_state_is_taken_in_any_case_and_separator(state: RequestState, case: object) -> None:
    for sep in (" ", "_", "-"):
        assert request_state(case(state.value.replace(" ", sep))) is state  # type: ignore[operator]


@given(texts)
@example("a=1,a=2")
@example("=x")
@example("a")
def test_caps_are_key_value_pairs_or_refused(text: str) -> None:
    try:
        caps = parse_caps(text)
    except UsageError as exc:
        assert "capabilit" in str(exc)
    else:
        assert all(k and k == k.strip() and v == v.strip() for k, v in caps.items())


@given(st.dictionaries(words, words | st.just(""), max_size=5))
def test_caps_written_as_text_read_back_the_same(caps: dict[str, str]) -> None:
    caps = {k.strip(): v.strip() for k, v in caps.items() if k.strip()}
    assert parse_caps(",".join(f"{k}={v}" for k, v in caps.items())) == caps


@given(texts)
@example("+99999999999999d")
@example("+1e5h")
@example("2026-13-01")
def test_a_time_is_an_aware_datetime_or_refused(text: str) -> None:
    try:
        when = parse_when(text)
    except UsageError:
        return
    assert isinstance(when, datetime) and when.tzinfo is not None


@given(st.one_of(texts, st.builds("http://{}".format, texts), st.builds("{}:8487".format, texts)))
@example("http://[::1")
@example("http://a:99999")
@example("http://xn--/")
@example("HTTPS://Boruta.Lab")
def test_a_url_is_http_with_a_host_that_the_client_can_call_or_refused(url: str) -> None:
    try:
        checked = check_url(url, "--url")
    except ConfigError as exc:
        assert "--url" in str(exc)
        return
    assert checked.lower().startswith(("http://", "https://"))
    answer = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
    with Client(checked, "t", transport=answer) as client:
        assert client.list_requests().items == []


@given(st.lists(texts, max_size=4))
def test_hostile_arguments_end_in_an_exit_code_never_a_traceback(argv: list[str]) -> None:
    listed = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
    assert _exit(["requests", "list", *argv], listed) in (0, 2)


@given(texts, texts, texts)
def test_hostile_reserve_arguments_are_refused_or_sent(caps: str, prio: str, when: str) -> None:
    refused = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"message": "invalid request: no"})
    )
    argv = ["reserve", "--caps", caps, "--priority", prio, "--deadline", when]
    assert _exit(argv, refused) in (0, 1, 2)  # 0: a value such as --help


def _exit(argv: list[str], transport: httpx.BaseTransport) -> object:
    try:
        return main(["--url", "http://boruta", "--token", "t", *argv], transport=transport)
    except SystemExit as exc:
        return exc.code  # argparse's usage error


@pytest.fixture(autouse=True)
def _no_user_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
