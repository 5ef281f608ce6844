"""``Batch``: the one way to change a worker fails the worker's job when it leaves RUN."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.service.batch import Batch
from tests.coordinator.domain.builders import T0, make_request, make_worker, running, uuid

_FAILS_JOB = {WorkerState.FAIL, WorkerState.BUSY, WorkerState.MAINTENANCE}


def _batch_with_job() -> tuple[Batch, Worker, Request]:
    worker = make_worker(1, state=WorkerState.RUN)
    req = running(make_request(7), worker.uuid)
    jobs: dict[WorkerUUID, RequestID] = {worker.uuid: req.id}
    return Batch(T0, "admin", {req.id: req}, {worker.uuid: worker}, jobs), worker, req


@pytest.mark.parametrize("new_state", list(WorkerState))
def test_a_worker_leaving_run_fails_its_job_whatever_the_caller(new_state: WorkerState) -> None:
    batch, worker, req = _batch_with_job()
    batch.put_worker(replace(worker, state=new_state, reason="power lost"))
    after = batch.request(req.id)
    assert after is not None
    failed = after.state is RequestState.FAILED
    assert failed == (new_state in _FAILS_JOB)
    if failed:
        assert after.reason == "power lost"
        assert [t.kind for t in batch.transitions] == ["worker", "request"]


def test_a_failed_job_without_a_worker_reason_says_which_state_the_worker_went_to() -> None:
    batch, worker, req = _batch_with_job()
    batch.put_worker(replace(worker, state=WorkerState.BUSY))
    after = batch.request(req.id)
    assert after is not None and after.reason == f"worker {uuid(1)} left RUNNING for BUSY"


def test_a_job_already_ended_in_the_same_batch_is_not_failed_again() -> None:
    batch, worker, req = _batch_with_job()
    batch.put_request(replace(req, state=RequestState.DONE))
    batch.put_worker(replace(worker, state=WorkerState.FAIL, reason="gone"))
    after = batch.request(req.id)
    assert after is not None and after.state is RequestState.DONE
