"""Coordinator addresses in the dryad's configuration: one or a list, each entry checked."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from dryad.addresses import MAX_COORDINATORS, Address, parse_list, parse_one
from dryad.errors import ConfigError
from dryad.settings import parse


def test_a_list_keeps_its_order_and_defaults_the_port() -> None:
    s = parse({"coordinators": ["b.lab:7175", "A.Lab.", "[::1]:9", "10.0.0.1:1"]})
    assert s.coordinators == (
        Address("b.lab", 7175),
        Address("a.lab", 7175),
        Address("::1", 9),
        Address("10.0.0.1", 1),
    )
    assert s.coordinator == "b.lab:7175, a.lab:7175, [::1]:9, 10.0.0.1:1"
    assert (s.coordinator_host, s.coordinator_port) == ("b.lab", 7175)


def test_one_coordinator_is_still_one_string() -> None:
    s = parse({"coordinator": "boruta.example.com:7175"})
    assert s.coordinators == (Address("boruta.example.com", 7175),)
    assert s.coordinator == "boruta.example.com:7175"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"coordinators": []}, "coordinators: empty"),
        ({"coordinators": "a:1"}, "coordinators: expected a list"),
        ({"coordinators": ["a:1", 7]}, "coordinators[1]: expected a HOST:PORT string"),
        ({"coordinators": ["a:1", "b:0"]}, "coordinators[1]: '0' is not a port number"),
        ({"coordinators": ["a:1", "b:x"]}, "coordinators[1]: 'x' is not a port number"),
        ({"coordinators": ["a:1", "b:70000"]}, "coordinators[1]: '70000' is not a port"),
        ({"coordinators": ["a:1", ":1"]}, "coordinators[1]: the host is missing"),
        ({"coordinators": ["a b:1"]}, "coordinators[0]: 'a b' is neither a host name"),
        ({"coordinators": ["-a:1"]}, "coordinators[0]: '-a' is neither"),
        ({"coordinators": ["a..b"]}, "coordinators[0]: 'a..b' is neither"),
        ({"coordinators": ["a:1", "A.:1"]}, "coordinators[1]: 'A.:1' repeats coordinators[0]"),
        ({"coordinators": ["a", "a:7175"]}, "coordinators[1]: 'a:7175' repeats"),
        ({"coordinators": ["::1", "[0::1]:7175"]}, "coordinators[1]: '[0::1]:7175' repeats"),
        ({"coordinators": [f"h{i}" for i in range(17)]}, "coordinators: 17 entries; at most 16"),
        ({"coordinator": "a", "coordinators": ["b"]}, "coordinator, coordinators: give one"),
        ({"coordinator": "x_y:1"}, "coordinator: 'x_y' is neither"),
        ({"coordinator": ["a"]}, "coordinator: expected a string"),
        ({}, "coordinator: required"),
    ],
)
def test_bad_entries_are_named(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert message in str(caught.value)


def test_the_limit_is_allowed() -> None:
    hosts = [f"h{i}" for i in range(MAX_COORDINATORS)]
    assert len(parse({"coordinators": hosts}).coordinators) == MAX_COORDINATORS


_text = st.text(st.characters(codec="utf-8"), max_size=40)


@given(st.lists(st.one_of(_text, st.integers(), st.none(), st.booleans()), max_size=20))
def test_any_junk_list_is_taken_or_refused_with_a_config_error(value: list[Any]) -> None:
    try:
        found = parse_list(value, "coordinators", 7175)
    except ConfigError as exc:
        assert str(exc).startswith("coordinators")
    else:
        assert 0 < len(found) == len(set(found)) <= MAX_COORDINATORS
        for address in found:
            assert parse_one(str(address), "x", 1) == address  # what it prints reads back


@given(_text)
def test_any_junk_string_is_taken_or_refused_with_a_config_error(value: str) -> None:
    try:
        address = parse_one(value, "coordinator", 7175)
    except ConfigError as exc:
        assert str(exc).startswith("coordinator: ")
    else:
        assert address.host and 0 < address.port < 65536
        assert parse_one(str(address), "x", 1) == address
