"""The worker state machine against the tables of docs/boruta-api.md §worker states."""

from __future__ import annotations

import pytest

from coordinator.domain import workers
from coordinator.domain.ids import UUID_CAP
from coordinator.domain.model import Worker
from coordinator.domain.states import WorkerState
from coordinator.errors import (
    BadAddress,
    ForbiddenStateChange,
    InMaintenance,
    MissingUUID,
    ModificationForbidden,
    NotInFailOrMaintenance,
    WrongStateArgument,
)
from tests.coordinator.domain.builders import HOUR, T0, make_worker, uuid

S = WorkerState
LATER = T0 + HOUR
CAPS = {UUID_CAP: uuid(1), "arch": "arm"}


def _known(state: WorkerState, groups: tuple[str, ...] = ()) -> Worker:
    """Worker 1, known since T0, at epoch 5."""
    return make_worker(1, caps={"arch": "arm"}, state=state, epoch=5, groups=groups)


# --- addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("10.0.0.1:22", "10.0.0.1", 22),
        ("[fe80::1]:2222", "fe80::1", 2222),
        ("board.lan:65535", "board.lan", 65535),
        ("10.0.0.1:1", "10.0.0.1", 1),
        ("10.0.0.1:0022", "10.0.0.1", 22),  # Go's port parser takes leading zeros
        ("10.0.0.1:" + "0" * 5000 + "22", "10.0.0.1", 22),
    ],
)
def test_split_address_gives_host_and_port(address: str, host: str, port: int) -> None:
    assert workers.split_address(address) == (host, port)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.0.0.1", "IP address is missing from address"),
        (":22", "IP address is missing from address"),
        ("[]:22", "IP address is missing from address"),
        ("", "IP address is missing from address"),
        ("10.0.0.1:", "Port is missing from address"),
        ("10.0.0.1:0", "Port is missing from address"),
        ("10.0.0.1:65536", "Port is missing from address"),
        ("10.0.0.1:ssh", "Port is missing from address"),
        ("10.0.0.1:-1", "Port is missing from address"),
        ("10.0.0.1:000", "Port is missing from address"),
        ("10.0.0.1:²", "Port is missing from address"),  # a digit to str.isdigit, not to int
        ("10.0.0.1:٢٢", "Port is missing from address"),  # Arabic-Indic 22
        ("10.0.0.1:" + "9" * 5000, "Port is missing from address"),  # over int()'s digit limit
        ("10.0.0.1:100000", "Port is missing from address"),
    ],
)
def test_split_address_refuses_a_missing_host_or_port(address: str, message: str) -> None:
    with pytest.raises(BadAddress) as caught:
        workers.split_address(address)
    assert caught.value.wire_message == "invalid request: " + message


# --- Register -----------------------------------------------------------------------------


def test_new_worker_registers_in_maintenance_without_groups() -> None:
    worker = workers.register(None, CAPS, "10.0.0.1:22", T0)
    assert (worker.uuid, worker.state, worker.groups) == (uuid(1), S.MAINTENANCE, ())
    assert (dict(worker.caps), worker.ssh_address, worker.registered, worker.changed) == (
        CAPS,
        "10.0.0.1:22",
        T0,
        T0,
    )


@pytest.mark.parametrize("caps", [{"arch": "arm"}, {UUID_CAP: ""}], ids=["absent", "empty"])
def test_register_without_uuid_cap_is_refused(caps: dict[str, str]) -> None:
    with pytest.raises(MissingUUID):
        workers.register(None, caps, "10.0.0.1:22", T0)


def test_register_with_a_bad_address_is_refused() -> None:
    with pytest.raises(BadAddress):
        workers.register(None, CAPS, "10.0.0.1", T0)


@pytest.mark.parametrize(
    ("state", "caps", "address", "after"),
    [
        (S.FAIL, CAPS, "10.0.0.1:22", S.PREPARE),  # FAIL --re-Register (unchanged)--> PREPARE
        (S.FAIL, CAPS, "10.9.9.9:22", S.PREPARE),  # an IP change alone does not count
        (S.FAIL, CAPS, "10.0.0.1:2222", S.BUSY),  # a changed port needs an admin
        (S.IDLE, CAPS, "10.0.0.1:2222", S.BUSY),
        (S.RUN, {**CAPS, "arch": "x86"}, "10.0.0.1:22", S.BUSY),  # changed caps
        (S.MAINTENANCE, {UUID_CAP: uuid(1)}, "10.0.0.1:22", S.BUSY),  # a cap removed
        (S.FAIL, {**CAPS, "new": "1"}, "10.0.0.1:22", S.BUSY),  # a cap added
    ],
)
def test_known_worker_re_registers_into_the_spec_state(
    state: WorkerState, caps: dict[str, str], address: str, after: WorkerState
) -> None:
    worker = workers.register(_known(state), caps, address, LATER)
    assert worker.state is after
    assert (dict(worker.caps), worker.ssh_address) == (caps, address)
    assert (worker.changed, worker.epoch) == (LATER, 6)


@pytest.mark.parametrize("state", [S.IDLE, S.RUN, S.PREPARE, S.MAINTENANCE, S.BUSY])
def test_unchanged_re_register_keeps_the_state_and_epoch(state: WorkerState) -> None:
    worker = workers.register(_known(state, groups=("lab",)), CAPS, "10.7.7.7:22", LATER)
    assert (worker.state, worker.epoch, worker.changed) == (state, 5, T0)
    assert (worker.ssh_address, worker.groups) == ("10.7.7.7:22", ("lab",))


@pytest.mark.parametrize("state", [S.IDLE, S.RUN, S.MAINTENANCE])
def test_new_host_keys_replace_the_old_without_a_state_change(state: WorkerState) -> None:
    known = workers.register(None, CAPS, "10.0.0.1:22", T0, ("ssh-ed25519 A",))
    assert known.host_keys == ("ssh-ed25519 A",)
    again = workers.register(_known(state), CAPS, "10.0.0.1:22", LATER, ("ssh-rsa B",))
    assert (again.state, again.epoch, again.host_keys) == (state, 5, ("ssh-rsa B",))
    assert workers.register(again, CAPS, "10.0.0.1:22", LATER).host_keys == ()


def test_changed_re_register_of_a_busy_worker_keeps_its_pending_operation() -> None:
    worker = workers.register(_known(S.BUSY), CAPS, "10.0.0.1:2222", LATER)
    assert (worker.state, worker.epoch) == (S.BUSY, 5)


# --- SetFail ------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [S.IDLE, S.RUN, S.PREPARE, S.FAIL])
def test_set_fail_moves_the_worker_to_fail_with_the_reason(state: WorkerState) -> None:
    worker = workers.set_fail(_known(state), "sd card gone", LATER)
    assert (worker.state, worker.reason, worker.changed, worker.epoch) == (
        S.FAIL,
        "sd card gone",
        LATER,
        6,
    )


@pytest.mark.parametrize("state", [S.MAINTENANCE, S.BUSY])
def test_set_fail_in_maintenance_is_refused(state: WorkerState) -> None:
    with pytest.raises(InMaintenance):
        workers.set_fail(_known(state), "sd card gone", LATER)


# --- SetState (admin) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "target", "after"),
    [
        *[(s, S.MAINTENANCE, S.BUSY) for s in S if s is not S.BUSY],  # from any state
        (S.BUSY, S.MAINTENANCE, None),  # no-op
        (S.MAINTENANCE, S.IDLE, S.PREPARE),
        (S.PREPARE, S.IDLE, None),  # no-op
    ],
)
def test_admin_set_state_follows_the_spec_table(
    state: WorkerState, target: WorkerState, after: WorkerState | None
) -> None:
    worker = workers.set_state(_known(state), target, LATER)
    assert (worker.state if worker else None) is after
    if worker is not None:
        assert (worker.changed, worker.epoch) == (LATER, 6)


@pytest.mark.parametrize("state", [S.IDLE, S.RUN, S.FAIL, S.BUSY])
def test_admin_set_idle_is_allowed_only_from_maintenance(state: WorkerState) -> None:
    with pytest.raises(ForbiddenStateChange):
        workers.set_state(_known(state), S.IDLE, LATER)


@pytest.mark.parametrize("target", [S.RUN, S.FAIL, S.PREPARE, S.BUSY])
def test_admin_may_only_ask_for_idle_or_maintenance(target: WorkerState) -> None:
    with pytest.raises(WrongStateArgument):
        workers.set_state(_known(S.MAINTENANCE), target, LATER)


# --- groups and deregistration ------------------------------------------------------------


def test_set_groups_stores_them_sorted_without_repeats() -> None:
    worker = workers.set_groups(_known(S.IDLE, groups=("old",)), ["qa", "lab", "qa"])
    assert worker.groups == ("lab", "qa")
    assert (worker.state, worker.epoch) == (S.IDLE, 5)


@pytest.mark.parametrize("state", [S.MAINTENANCE, S.FAIL])
def test_worker_in_maintenance_or_fail_may_be_deregistered(state: WorkerState) -> None:
    workers.check_deregister(_known(state))


@pytest.mark.parametrize("state", [S.IDLE, S.RUN, S.PREPARE, S.BUSY])
def test_worker_elsewhere_may_not_be_deregistered(state: WorkerState) -> None:
    with pytest.raises(NotInFailOrMaintenance):
        workers.check_deregister(_known(state))


# --- matcher and job transitions ----------------------------------------------------------


def test_matcher_takes_an_idle_worker_into_run() -> None:
    worker = workers.take(_known(S.IDLE), LATER)
    assert (worker.state, worker.changed, worker.epoch) == (S.RUN, LATER, 6)


@pytest.mark.parametrize("state", [s for s in S if s is not S.IDLE])
def test_matcher_cannot_take_a_worker_that_is_not_idle(state: WorkerState) -> None:
    with pytest.raises(ModificationForbidden) as caught:
        workers.take(_known(state), LATER)
    assert (caught.value.from_state, caught.value.to_state) == (state, S.RUN)


def test_finished_job_sends_the_worker_to_prepare() -> None:
    worker = workers.finish_job(_known(S.RUN), LATER)
    assert worker is not None
    assert (worker.state, worker.epoch) == (S.PREPARE, 6)


@pytest.mark.parametrize("state", [s for s in S if s is not S.RUN])
def test_finished_job_leaves_a_worker_that_already_left_run_alone(state: WorkerState) -> None:
    assert workers.finish_job(_known(state), LATER) is None


def test_prepared_worker_becomes_idle_with_the_new_key() -> None:
    worker = workers.prepared(_known(S.PREPARE), 5, b"PEM", LATER)
    assert worker is not None
    assert (worker.state, worker.key, worker.epoch) == (S.IDLE, b"PEM", 6)
    assert "PEM" not in repr(worker)


def test_busy_worker_reaches_maintenance_when_the_dryad_confirms() -> None:
    worker = workers.in_maintenance(_known(S.BUSY), 5, LATER)
    assert worker is not None
    assert (worker.state, worker.epoch) == (S.MAINTENANCE, 6)


@pytest.mark.parametrize("state", [S.PREPARE, S.BUSY])
def test_failed_prepare_or_maintenance_step_sends_the_worker_to_fail(state: WorkerState) -> None:
    worker = workers.operation_failed(_known(state), 5, "rpc: timeout", LATER)
    assert worker is not None
    assert (worker.state, worker.reason, worker.epoch) == (S.FAIL, "rpc: timeout", 6)


@pytest.mark.parametrize(
    ("state", "epoch"),
    [(S.PREPARE, 4), (S.IDLE, 5), (S.BUSY, 5), (S.MAINTENANCE, 5)],
    ids=["older-epoch", "idle", "busy", "maintenance"],
)
def test_stale_prepare_result_is_ignored(state: WorkerState, epoch: int) -> None:
    assert workers.prepared(_known(state), epoch, b"PEM", LATER) is None


@pytest.mark.parametrize(
    ("state", "epoch"),
    [(S.BUSY, 4), (S.PREPARE, 5), (S.MAINTENANCE, 5)],
    ids=["older-epoch", "prepare", "maintenance"],
)
def test_stale_maintenance_result_is_ignored(state: WorkerState, epoch: int) -> None:
    assert workers.in_maintenance(_known(state), epoch, LATER) is None


@pytest.mark.parametrize(
    ("state", "epoch"),
    [(S.PREPARE, 4), (S.BUSY, 6), (S.IDLE, 5), (S.FAIL, 5), (S.MAINTENANCE, 5)],
    ids=["older-epoch", "newer-epoch", "idle", "fail", "maintenance"],
)
def test_stale_operation_failure_is_ignored(state: WorkerState, epoch: int) -> None:
    assert workers.operation_failed(_known(state), epoch, "late", LATER) is None


def test_a_new_state_starts_a_new_epoch_so_an_overtaken_prepare_is_dropped() -> None:
    preparing = _known(S.PREPARE)
    busy = workers.set_state(preparing, S.MAINTENANCE, LATER)
    assert busy is not None
    assert workers.prepared(busy, preparing.epoch, b"PEM", LATER) is None


@pytest.mark.parametrize(("to", "reason"), [(S.FAIL, "why"), (S.IDLE, ""), (S.BUSY, "")])
def test_only_fail_keeps_a_reason(to: WorkerState, reason: str) -> None:
    failed = workers.move(_known(S.RUN), S.FAIL, T0, "old")
    assert workers.move(failed, to, LATER, "why").reason == reason


@pytest.mark.parametrize(
    ("old", "new", "fails"),
    [(old, new, old is S.RUN and new in (S.FAIL, S.BUSY, S.MAINTENANCE)) for old in S for new in S],
)
def test_leaving_run_for_fail_or_maintenance_fails_the_running_request(
    old: WorkerState, new: WorkerState, fails: bool
) -> None:
    assert workers.fails_job(old, new) is fails


# --- a key of another type just before a job ------------------------------------------------


def test_an_idle_worker_takes_a_key_of_another_type_and_keeps_all_else() -> None:
    old = _known(S.IDLE)
    new = workers.rekeyed(old, b"new key")
    assert new.key == b"new key"
    assert (new.state, new.epoch, new.changed) == (old.state, old.epoch, old.changed)


@pytest.mark.parametrize("state", [s for s in WorkerState if s is not S.IDLE])
def test_only_an_idle_worker_is_rekeyed(state: WorkerState) -> None:
    with pytest.raises(ModificationForbidden):
        workers.rekeyed(_known(state), b"new key")
