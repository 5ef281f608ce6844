"""Several batches' changes merged into one commit (``service.commits.merged``) store what
the last batch left, on SQLite and on PostgreSQL alike (where one statement may not
upsert a row twice)."""

from __future__ import annotations

from coordinator.domain.states import RequestState, WorkerState
from coordinator.service.commits import merged
from coordinator.store import Changes
from coordinator.store.sql import SqlStore
from tests.coordinator.domain.builders import make_request, make_worker


def test_a_group_stores_each_row_as_the_last_batch_left_it(store: SqlStore) -> None:
    store.commit(Changes(workers=[make_worker(1), make_worker(2)]))
    first = Changes(
        requests=[make_request(1), make_request(2)],
        workers=[make_worker(1, state=WorkerState.RUN)],
        removed_workers=[make_worker(2).uuid],
    )
    second = Changes(
        requests=[make_request(1, state=RequestState.CANCELLED), make_request(2, priority=3)],
        workers=[make_worker(2, state=WorkerState.MAINTENANCE)],  # registered again
    )
    third = Changes(removed_workers=[make_worker(1).uuid])
    store.commit(merged([first, second, third]))
    loaded = store.load()
    assert {(r.id, r.state, r.priority) for r in loaded.requests} == {
        (1, RequestState.CANCELLED, 8),
        (2, RequestState.WAITING, 3),
    }
    assert [(w.uuid, w.state) for w in loaded.workers] == [
        (make_worker(2).uuid, WorkerState.MAINTENANCE)
    ]
