"""Real processes: a coordinator and simulated MuxPi dryads over real SSH on loopback."""

from __future__ import annotations

import signal
from typing import Any
from uuid import UUID

import pytest

from dryad.candidates import home_position
from tests.e2e.coordinators import free_port
from tests.e2e.process_farm import GRACE, ProcessFarm, board, eventually

pytestmark = pytest.mark.e2e


def test_a_dryad_enrols_registers_and_serves_a_job(farm: ProcessFarm) -> None:
    home = farm.dryad(1, "rpi4")
    uuid = farm.idle("rpi4")
    with farm.http() as http:
        rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}}).json()["ReqID"]
        access = http.post(f"/api/v1/reqs/{rid}/acquire_worker", params={"wait": 30}).json()
        # The tunnel's port here, from the farm's range, not the board's sshd port.
        assert (
            access["Username"] == "boruta-user"
            and farm.tunnels[0] <= access["Addr"]["Port"] <= farm.tunnels[1]
        )
        assert access["Addr"]["IP"] == "127.0.0.1"
        assert http.get(f"/api/v1/workers/{uuid}").json()["Connected"] is True
    # The board shows the job: the panel's RUNNING colour, blue, on the simulated STM.
    eventually(lambda: board(home).get("leds", [None])[0] == [0, 0, 128])


def test_dryads_reconnect_after_a_coordinator_is_killed_and_nothing_is_lost(
    patient_farm: ProcessFarm,
) -> None:
    farm = patient_farm
    farm.dryad(1, "rpi4")
    farm.dryad(2, "odroid")
    farm.idle("rpi4")
    farm.idle("odroid")
    with farm.http() as http:
        rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}}).json()["ReqID"]
        before = http.get(f"/api/v1/reqs/{rid}").json()
    assert before["State"] == "IN PROGRESS"
    farm.coordinator.kill()
    farm.restart()
    # The dryads' back-off after a lost link reaches 30 s (with jitter): allow for it.
    eventually(lambda: all(w.get("Connected") for w in farm.workers().values()), seconds=75)
    with farm.http() as http:
        assert http.get(f"/api/v1/reqs/{rid}").json() == before
    workers = farm.workers()
    assert (workers["rpi4"]["State"], workers["odroid"]["State"]) == ("RUNNING", "IDLE")


def test_a_dryad_killed_during_a_job_fails_it_after_the_grace_period(farm: ProcessFarm) -> None:
    farm.dryad(1, "rpi4")
    uuid = farm.idle("rpi4")
    with farm.http() as http:
        rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}}).json()["ReqID"]
    farm.dryads[0].send_signal(signal.SIGKILL)
    farm.dryads[0].wait(10)

    def failed() -> dict[str, Any] | None:
        with farm.http() as http:
            req: dict[str, Any] = http.get(f"/api/v1/reqs/{rid}").json()
        return req if req["State"] == "FAILED" else None

    req = eventually(failed, seconds=GRACE + 20)
    assert req["Reason"] == "disconnected"
    worker = farm.workers()["rpi4"]
    assert (worker["WorkerUUID"], worker["State"], worker["Reason"]) == (
        uuid,
        "FAILED",
        "disconnected",
    )


def test_a_dryad_fails_over_to_the_next_coordinator_address_and_keeps_its_job(
    patient_farm: ProcessFarm,
) -> None:
    farm = patient_farm
    other = f"127.0.0.1:{free_port()}"  # nobody listens there yet: a dead coordinator
    # A UUID whose first dial goes to the first address (docs/failover.md §the redial order).
    uuid = next(u for n in range(1, 100) if home_position(u := str(UUID(int=n)), 2) == 0)
    home = farm.dryad(1, "rpi4", coordinators=(other, farm.link), uuid=uuid)
    assert farm.idle("rpi4") == uuid
    with farm.http() as http:
        rid = http.post("/api/v1/reqs/", json={"Caps": {"device_type": "rpi4"}}).json()["ReqID"]
        before = http.get(f"/api/v1/reqs/{rid}").json()
    assert before["State"] == "IN PROGRESS"
    log = (home / "dryad.log").read_text()
    assert f"link to {other} failed: " in log
    assert f"dryad connected to coordinator {farm.link} as {uuid}" in log
    # The coordinator dies and comes back, same database and host key, on the other
    # address the dryad was given; the first one stays dead.
    farm.coordinator.kill()
    first, farm.link = farm.link, other
    farm.restart()
    eventually(lambda: farm.workers()["rpi4"].get("Connected"), seconds=75)
    eventually(
        lambda: f"dryad connected to coordinator {other}" in (home / "dryad.log").read_text()
    )
    with farm.http() as http:
        assert http.get(f"/api/v1/reqs/{rid}").json() == before
    assert farm.workers()["rpi4"]["State"] == "RUNNING"
    assert f"link to {first} lost: " in (home / "dryad.log").read_text()
