"""Every row of the link's table: its params and result round-trip, bad params are refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coordinator import wire
from coordinator.domain.states import WorkerState as DomainState
from coordinator.service.steps import WIRE_STATES, wire_state

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7oUxXzL5oRyXqtkmrQx7n6Qs1J3P4bJ1tM7x0fFq2C job"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAIAAAAAgCAAAAAA="  # any base64: the panels check the PNG
REPORT = wire.HealthReport(
    (wire.CheckResult("stm", True, True, "v1.0"), wire.CheckResult("sd", False, False))
)

# One example of every method's params and result, by method name.
EXAMPLES: dict[str, tuple[wire.Message, wire.Message | None]] = {
    wire.ENROL: (wire.Enrol("s3cret"), wire.Enrolled("00000000-0000-4000-8000-000000000001")),
    wire.REGISTER: (
        wire.Registration({"UUID": "u", "board": "rpi4"}, ":22", "0.3.0"),
        wire.Registered(wire.WorkerState.MAINTENANCE),
    ),
    wire.SET_FAIL: (wire.SetFail("STM lost"), None),
    wire.HEALTH: (REPORT, None),
    wire.BUTTON: (wire.Button(2), None),
    wire.PANEL: (wire.Panel(PNG, ((0, 128, 0), (96, 144, 0))), None),
    wire.PREPARE: (wire.Prepare(KEY), None),
    wire.RELEASE: (wire.Empty(), None),
    wire.MAINTENANCE: (wire.MaintenanceMessage("new SD card"), None),
    wire.HEALTHCHECK: (wire.Empty(), REPORT),
    wire.IDENTIFY: (wire.Identify(30.0), None),
    wire.DISPLAY: (
        wire.Display(wire.WorkerState.RUNNING, owner="alice", until="2025-03-01T13:00:00+00:00"),
        None,
    ),
    wire.DIAL_BACK: (
        wire.DialBack.of(7176, bytes(range(wire.SECRET_SIZE))),
        wire.DialedBack(False, "cannot connect to coordinator:7176: No route to host"),
    ),
}


def test_the_table_has_the_thirteen_methods_and_every_one_an_example() -> None:
    assert set(wire.TABLE) == set(EXAMPLES)
    assert len(wire.TABLE) == 13
    assert all(name == row and row.name == name for name, row in wire.TABLE.items())
    to_dryad = {str(r) for r in wire.TABLE.values() if r.direction is wire.Direction.TO_DRYAD}
    assert to_dryad == {
        "prepare", "release", "maintenance", "healthcheck", "identify", "display", "dial_back"
    }  # fmt: skip
    notifications = {str(r) for r in wire.TABLE.values() if r.notification}
    assert notifications == {"button", "panel"}


@pytest.mark.parametrize("method", list(wire.TABLE))
def test_params_and_result_round_trip_through_json(method: str) -> None:
    row = wire.TABLE[method]
    params, answer = EXAMPLES[method]
    # Through JSON text, as on the wire: tuples come back as lists and must be read back.
    sent = json.loads(json.dumps(params.to_wire()))
    assert row.params.from_wire(sent) == params
    assert row.result.from_wire(json.loads(json.dumps(wire.encode(answer)))) == answer


def test_existing_messages_keep_their_field_names() -> None:
    """Today's dryads and coordinators read these names: the wire must not change."""
    assert wire.Display(wire.WorkerState.IDLE).to_wire() == {
        "state": "IDLE", "owner": "", "until": "", "message": "", "reason": ""
    }  # fmt: skip
    assert wire.Registration({"UUID": "u"}, ":22").to_wire() == {
        "caps": {"UUID": "u"}, "ssh_address": ":22", "version": ""
    }  # fmt: skip
    assert wire.Prepare(KEY).to_wire() == {"public_key": KEY}
    assert wire.MaintenanceMessage().to_wire() == {"message": "maintenance"}
    assert wire.Identify(30).to_wire() == {"seconds": 30}
    assert wire.SetFail("x").to_wire() == {"reason": "x"}
    assert wire.Button(1).to_wire() == {"button": 1}
    assert wire.Enrol("t").to_wire() == {"token": "t"}
    assert wire.Registered(wire.WorkerState.IDLE).to_wire() == {"state": "IDLE"}
    assert wire.Empty().to_wire() == {}


def _wrong(value: Any) -> Any:
    """A value of another JSON type than ``value``'s."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return 5
    return "not an object or array"


def _bad_params() -> list[tuple[str, dict[str, Any], str]]:
    """For every method: each field of the wrong type, each required field missing, each
    text field holding a lone surrogate."""
    cases = []
    for method, (params, _) in EXAMPLES.items():
        sent = params.to_wire()
        required = set(sent) - _optional(method)
        for key, value in sent.items():
            cases.append((method, {**sent, key: _wrong(value)}, f"{key} wrong type"))
            if key in required:
                cases.append((method, {k: v for k, v in sent.items() if k != key}, f"no {key}"))
            if isinstance(value, str):
                cases.append((method, {**sent, key: "bad \ud800"}, f"{key} surrogate"))
    return cases


def _optional(method: str) -> set[str]:
    return {
        wire.REGISTER: {"version"},
        wire.MAINTENANCE: {"message"},
        wire.DISPLAY: {"owner", "until", "message", "reason"},
    }.get(method, set())


@pytest.mark.parametrize(
    ("method", "params"),
    [pytest.param(m, p, id=f"{m}: {why}") for m, p, why in _bad_params()],
)
def test_bad_params_are_wire_errors(method: str, params: dict[str, Any]) -> None:
    with pytest.raises(wire.WireError):
        wire.TABLE[method].params.from_wire(params)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (wire.REGISTER, {"caps": {"UUID": "\ud800"}, "ssh_address": ":22"}),
        (wire.REGISTER, {"caps": {"\udfff": "u"}, "ssh_address": ":22"}),
        (wire.REGISTER, {"caps": {"UUID": 1}, "ssh_address": ":22"}),
        (wire.HEALTH, {"checks": [{"name": "\ud800", "passed": True, "critical": True}]}),
        (wire.HEALTH, {"checks": [{"name": "stm", "passed": 1, "critical": True}]}),
        (wire.HEALTH, {"checks": ["stm"]}),
        (wire.PANEL, {"screen_png_b64": PNG, "leds": [[0, 0, 0]]}),
        (wire.PANEL, {"screen_png_b64": PNG, "leds": [[0, 0, 0], [0, 0, 256]]}),
        (wire.PREPARE, {"public_key": "   "}),
        (wire.IDENTIFY, {"seconds": 0}),
        (wire.IDENTIFY, {"seconds": wire.MAX_IDENTIFY + 1}),
        (wire.IDENTIFY, {"seconds": float("nan")}),
        (wire.IDENTIFY, {"seconds": True}),
        (wire.BUTTON, {"button": True}),
        (wire.DISPLAY, {"state": "LOST"}),
        (wire.DISPLAY, {"state": "idle"}),
    ],
)
def test_bad_values_inside_the_fields_are_wire_errors(method: str, params: dict[str, Any]) -> None:
    with pytest.raises(wire.WireError):
        wire.TABLE[method].params.from_wire(params)


@pytest.mark.parametrize("method", list(wire.TABLE))
def test_params_that_are_no_object_are_wire_errors(method: str) -> None:
    with pytest.raises(wire.WireError):
        wire.TABLE[method].params.from_wire(["not", "an", "object"])


@pytest.mark.parametrize(
    ("method", "answer"),
    [
        (wire.ENROL, None),
        (wire.ENROL, {"uuid": 5}),
        (wire.REGISTER, {"state": "LOST"}),
        (wire.REGISTER, {}),
        (wire.HEALTHCHECK, {"checks": None}),
        (wire.PREPARE, {"unexpected": True}),
    ],
)
def test_bad_results_are_wire_errors(method: str, answer: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.TABLE[method].result.from_wire(answer)


def test_unknown_fields_are_ignored_so_either_end_may_add_one() -> None:
    assert wire.Button.from_wire({"button": 1, "long_press": True}) == wire.Button(1)


def test_optional_fields_take_their_defaults() -> None:
    assert wire.MaintenanceMessage.from_wire({}) == wire.MaintenanceMessage("maintenance")
    assert wire.Display.from_wire({"state": "IDLE"}) == wire.Display(wire.WorkerState.IDLE)
    assert wire.Prepare.from_wire({"public_key": f"  {KEY}\n"}) == wire.Prepare(KEY)


def test_one_maintenance_message_for_the_call_and_the_board() -> None:
    note = wire.MaintenanceMessage("new SD card")
    view = wire.Display.for_maintenance(note, wire.WorkerState.BUSY)
    assert (view.state, view.maintenance) == (wire.WorkerState.BUSY, note)
    assert wire.Display(wire.WorkerState.MAINTENANCE).maintenance == wire.MaintenanceMessage()


def test_the_domain_states_map_onto_the_wire_states_one_to_one() -> None:
    assert set(WIRE_STATES) == set(DomainState)
    assert set(WIRE_STATES.values()) == set(wire.WorkerState)
    # The original's strings on both sides: a coordinator before the mapping sent .value.
    assert all(wire_state(state).value == state.value for state in DomainState)


def test_a_row_knows_its_direction_and_timeout() -> None:
    assert (wire.PREPARE.direction, wire.PREPARE.timeout) == (wire.Direction.TO_DRYAD, 60.0)
    assert (wire.PANEL.timeout, wire.PANEL.notification) == (None, True)
    with pytest.raises(ValueError, match="a call has a timeout"):
        wire.Method("x", wire.Direction.TO_DRYAD, None, wire.Empty, wire.NULL, "")
