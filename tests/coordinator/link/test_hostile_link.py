"""Hostile input over the dryad link: text that is not UTF-8 or over the limits in any field
a dryad sends ends that call with a JSON-RPC error and a log line naming the dryad; nothing
is stored and the session stays up. Only a protocol violation closes it, logged too
(docs/boruta-api.md §limits)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from coordinator.domain.states import WorkerState
from coordinator.wire import (
    BUTTON,
    HEALTH,
    INVALID_PARAMS,
    MAX_LINE,
    PANEL,
    PARSE_ERROR,
    REGISTER,
    SET_FAIL,
    RpcError,
    limits,
)

from .dryads import TestDryad, dial, enrol_and_register
from .link_farm import LinkFarm

pytestmark = pytest.mark.anyio

BAD = st.tuples(st.text(max_size=5), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)).map(
    "".join
)
CHECK = {"name": "stm", "passed": True, "critical": True, "detail": ""}


def _calls(dryad: TestDryad, bad: str, n: int) -> list[tuple[str, dict[str, Any], str]]:
    """(method, params, the field the error must name): one bad field each."""
    reg = dryad.registration()
    return [
        (REGISTER, {**reg, "caps": {**reg["caps"], "board": bad}}, "caps"),
        (REGISTER, {**reg, "caps": {**reg["caps"], bad: "x"}}, "caps key"),
        (REGISTER, {**reg, "version": bad}, "version"),
        (REGISTER, {**reg, "ssh_address": bad + ":22"}, "ssh_address"),
        (
            REGISTER,
            {**reg, "caps": {**reg["caps"], **{f"k{i}": "v" for i in range(limits.MAX_CAPS + n)}}},
            "caps",
        ),
        (REGISTER, {**reg, "caps": {**reg["caps"], "v": "x" * (limits.MAX_CAP_VALUE + n)}}, "caps"),
        (SET_FAIL, {"reason": bad}, "reason"),
        (SET_FAIL, {"reason": "r" * (limits.MAX_TEXT + n)}, "reason"),
        (HEALTH, {"checks": [{**CHECK, "name": bad}]}, "name"),
        (HEALTH, {"checks": [{**CHECK, "detail": bad}]}, "detail"),
        (HEALTH, {"checks": [{**CHECK, "detail": "d" * (limits.MAX_TEXT + n)}]}, "detail"),
        (HEALTH, {"checks": [CHECK] * (limits.MAX_CHECKS + n)}, "checks"),
        (PANEL, {"screen_png_b64": bad, "leds": [[0, 0, 0], [0, 0, 0]]}, "screen_png_b64"),
    ]


@pytest.fixture
def dryad() -> TestDryad:
    """One dryad, and one key, for every example of a test: its key is bound at enrolment."""
    return TestDryad()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(bad=BAD, n=st.integers(1, 40), case=st.integers(0, 12))
async def test_a_bad_field_ends_the_call_with_invalid_params_and_a_log_line(
    farm: LinkFarm, dryad: TestDryad, caplog: pytest.LogCaptureFixture, bad: str, n: int, case: int
) -> None:
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
        before = farm.service.get_worker(dryad.uuid)
        health = farm.service.last_health(dryad.uuid)
        method, params, field = _calls(dryad, bad, n)[case]
        caplog.clear()
        with caplog.at_level(logging.WARNING, "coordinator.link"):
            with pytest.raises(RpcError) as refused:
                await link.peer.call(method, params)
        assert refused.value.code == INVALID_PARAMS
        assert field in refused.value.message
        await link.peer.call(BUTTON, {"button": 1})  # the session is still up
        assert farm.link.connected(dryad.uuid)
    after = farm.service.get_worker(dryad.uuid)
    assert (after.state, after.caps, after.reason) == (before.state, before.caps, before.reason)
    assert farm.service.last_health(dryad.uuid) == health
    (line,) = [r.getMessage() for r in caplog.records if f"{method} refused" in r.getMessage()]
    assert line.startswith(f"[worker={dryad.uuid}] {method} refused: ")


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 5000 + b"]" * 5000 + b"\n",
        b'{"jsonrpc":"2.0","id":1,"method":"button","params":' * 40 + b"{}" + b"}" * 40 + b"\n",
        b'{"jsonrpc":"2.0","id":1,"id":2,"method":"button","params":{"button":1}}\n',
        b"\xff\xfe not UTF-8\n",
    ],
    ids=["deep array", "deep object", "duplicate key", "not utf-8"],
)
async def test_a_malformed_line_is_answered_logged_and_the_session_survives(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
    async with dial(farm.port, dryad, raw=True) as link:
        with caplog.at_level(logging.WARNING, "coordinator.link"):
            link.writer.write(line)
            answer = json.loads(await link.reader.readline())
            link.writer.write(b'{"jsonrpc":"2.0","id":9,"method":"button","params":{"button":1}}\n')
            after = json.loads(await link.reader.readline())
    assert answer["error"]["code"] == PARSE_ERROR
    assert after == {"jsonrpc": "2.0", "id": 9, "result": None}
    assert f"[worker={dryad.uuid}] link: malformed message refused: " in caplog.text


async def test_an_oversize_line_is_a_protocol_violation_closed_and_logged(
    farm: LinkFarm, caplog: pytest.LogCaptureFixture
) -> None:
    dryad = TestDryad()
    async with dial(farm.port, dryad) as link:
        await enrol_and_register(farm, link, dryad)
    with caplog.at_level(logging.WARNING, "coordinator.link"):
        async with dial(farm.port, dryad, raw=True) as link:
            link.writer.write(b"x" * (MAX_LINE + 1))
            await link.reader.readline()
            assert await link.reader.read() == b""
    assert f"[worker={dryad.uuid}] link closed: " in caplog.text
    assert farm.service.get_worker(dryad.uuid).state is WorkerState.MAINTENANCE
