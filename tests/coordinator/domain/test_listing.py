"""Filter, sort and paginate (docs/boruta-api.md §listing), with the anchor and total quirks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from coordinator.domain import listing
from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.listing import (
    MAX_PAGE_LIMIT,
    REQUESTS,
    WORKERS,
    ListSpec,
    Page,
    RequestFilter,
    WorkerFilter,
    page,
    parse_backward,
    parse_descending,
    request_sort_key,
    worker_sort_key,
)
from coordinator.domain.model import Request, Worker
from coordinator.domain.states import RequestState, WorkerState
from coordinator.errors import NotFound, WrongListDirection, WrongSortItem, WrongSortOrder
from tests.coordinator.domain.builders import HOUR, T0, make_request, make_worker, uuid

WAIT, RUN, DONE = RequestState.WAITING, RequestState.IN_PROGRESS, RequestState.DONE

# id: priority, state, deadline offset (hours), valid-after offset (hours)
_TABLE = {
    1: (5, DONE, 3, 0),
    2: (1, WAIT, 1, 2),
    3: (5, RUN, 2, 1),
    4: (9, WAIT, 1, 0),
    5: (1, DONE, 4, 0),
    6: (5, WAIT, 2, 3),
}
REQS = {
    RequestID(n): make_request(
        n, priority=p, state=s, deadline=T0 + d * HOUR, valid_after=T0 + v * HOUR
    )
    for n, (p, s, d, v) in _TABLE.items()
}


def _everything(_: object) -> bool:
    return True


def _ids(items: Sequence[Request]) -> list[int]:
    return [r.id for r in items]


def _list(
    match: Callable[[Request], bool] = _everything,
    anchor: int | None = None,
    backward: bool = False,
    limit: int = 0,
    sort: str = "",
    descending: bool = False,
) -> tuple[list[int], int, int]:
    key = request_sort_key(sort)
    rid = None if anchor is None else RequestID(anchor)
    got = page(REQUESTS, REQS, ListSpec(match, key, descending, rid, backward, limit))
    return _ids(got.items), got.total, got.remaining


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "descending"),
    [
        ("", False),
        ("ascending", False),
        ("ASCENDING", False),
        ("descending", True),
        ("Descending", True),
    ],
)
def test_sort_order_is_parsed_case_insensitively(word: str, descending: bool) -> None:
    assert parse_descending(word) is descending


@pytest.mark.parametrize(
    ("word", "backward"),
    [("", False), ("forward", False), ("FORWARD", False), ("backward", True), ("BackWard", True)],
)
def test_direction_is_parsed_case_insensitively(word: str, backward: bool) -> None:
    assert parse_backward(word) is backward


@pytest.mark.parametrize(
    ("parse", "word", "error", "message"),
    [
        (
            parse_descending,
            "desc",
            WrongSortOrder,
            "unknown sort order (valid: ascending or descending)",
        ),
        (
            parse_backward,
            "back",
            WrongListDirection,
            "unknown direction (valid: forward or backward)",
        ),
        (
            request_sort_key,
            "owner",
            WrongSortItem,
            "unknown name of item by which list should be sorted",
        ),
        (
            worker_sort_key,
            "caps",
            WrongSortItem,
            "unknown name of item by which list should be sorted",
        ),
    ],
)
def test_unknown_list_words_are_400_with_the_originals_message(
    parse: Callable[[str], object], word: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        parse(word)
    assert str(caught.value) == message


# --- sorting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "ascending"),
    [
        ("", [1, 2, 3, 4, 5, 6]),
        ("ID", [1, 2, 3, 4, 5, 6]),
        ("priority", [2, 5, 1, 3, 6, 4]),  # ties by ID
        ("Deadline", [2, 4, 3, 6, 1, 5]),
        ("validafter", [1, 4, 5, 3, 2, 6]),
        ("state", [1, 5, 3, 2, 4, 6]),  # as strings: DONE < IN PROGRESS < WAITING
    ],
)
def test_requests_sort_by_item_with_ties_by_id_in_the_same_order(
    item: str, ascending: list[int]
) -> None:
    assert _list(sort=item)[0] == ascending
    assert _list(sort=item, descending=True)[0] == ascending[::-1]


def _workers() -> dict[WorkerUUID, Worker]:
    spec = {
        3: (WorkerState.IDLE, ("b",)),
        1: (WorkerState.RUN, ("a", "b")),
        2: (WorkerState.IDLE, ("a",)),
        4: (WorkerState.FAIL, ()),
    }
    return {uuid(n): make_worker(n, state=s, groups=g) for n, (s, g) in spec.items()}


@pytest.mark.parametrize(
    ("item", "order"),
    [
        ("", [1, 2, 3, 4]),
        ("UUID", [1, 2, 3, 4]),
        ("state", [4, 2, 3, 1]),  # FAILED < IDLE < RUNNING, ties by UUID
        ("groups", [4, 2, 1, 3]),  # () < (a) < (a, b) < (b)
    ],
)
def test_workers_sort_by_uuid_state_or_groups(item: str, order: list[int]) -> None:
    workers = _workers()
    got = page(WORKERS, workers, ListSpec(_everything, worker_sort_key(item)))
    assert [int(w.uuid[-12:], 16) for w in got.items] == order


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "ids"),
    [
        (RequestFilter(), [1, 2, 3, 4, 5, 6]),  # empty fields are ignored
        (RequestFilter(ids=frozenset({2, 4, 99})), [2, 4]),  # any value in a field
        (RequestFilter(priorities=frozenset({1, 9})), [2, 4, 5]),
        (RequestFilter(states=frozenset({"WAITING", "IN PROGRESS"})), [2, 3, 4, 6]),
        (RequestFilter(states=frozenset({"waiting"})), []),  # the caller upper-cases
        (RequestFilter(priorities=frozenset({5}), states=frozenset({"WAITING"})), [6]),  # AND
        (
            RequestFilter(
                ids=frozenset({1, 2}), priorities=frozenset({1}), states=frozenset({"DONE"})
            ),
            [],
        ),
    ],
)
def test_request_filter_ors_within_a_field_and_ands_across_fields(
    flt: RequestFilter, ids: list[int]
) -> None:
    assert _list(flt)[0] == ids
    assert _ids(flt.select(REQS.values())) == ids
    # page() takes a faster way for our filters; a plain predicate must list the same.
    for anchor in (None, 1, 4):
        for backward in (False, True):
            plain = _list(lambda r: flt(r), anchor=anchor, backward=backward, limit=2)
            assert _list(flt, anchor=anchor, backward=backward, limit=2) == plain


@pytest.mark.parametrize(
    ("flt", "numbers"),
    [
        (WorkerFilter(), [1, 2, 3]),
        (WorkerFilter(groups=frozenset({"lab", "none"})), [1, 3]),  # any listed group
        (WorkerFilter(caps={"arch": "arm"}), [1, 2]),
        (WorkerFilter(caps={"arch": "arm", "ram": "2G"}), [2]),  # every cap, exact value
        (WorkerFilter(caps={"arch": "ARM"}), []),
        (WorkerFilter(caps={"gpu": ""}), []),  # a missing key never matches
        (WorkerFilter(groups=frozenset({"lab"}), caps={"arch": "arm"}), [1]),
    ],
)
def test_worker_filter_takes_any_group_and_every_exact_cap(
    flt: WorkerFilter, numbers: list[int]
) -> None:
    farm = [
        make_worker(1, caps={"arch": "arm"}, groups=("lab",)),
        make_worker(2, caps={"arch": "arm", "ram": "2G"}),
        make_worker(3, caps={"arch": "x86"}, groups=("dev", "lab")),
    ]
    assert [n for n, w in enumerate(farm, 1) if flt(w)] == numbers
    assert [w.uuid for w in flt.select(farm)] == [farm[n - 1].uuid for n in numbers]


# --- pagination ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "backward", "limit", "expected"),
    [
        (None, False, 2, ([1, 2], 6, 4)),  # from the beginning
        (2, False, 2, ([3, 4], 6, 2)),  # forward starts after the anchor
        (5, False, 2, ([6], 6, 0)),
        (6, False, 2, ([], 6, 0)),  # after the last one: empty page
        (None, True, 2, ([5, 6], 6, 4)),  # backward without an anchor: the last page
        (5, True, 2, ([3, 4], 6, 2)),  # backward ends before the anchor
        (2, True, 2, ([1], 6, 0)),
        (1, True, 2, ([], 6, 0)),
    ],
)
def test_pagination_moves_around_the_anchor(
    anchor: int | None, backward: bool, limit: int, expected: tuple[list[int], int, int]
) -> None:
    assert _list(anchor=anchor, backward=backward, limit=limit) == expected


@pytest.mark.parametrize("limit", [0, MAX_PAGE_LIMIT + 1, -5])
def test_page_limit_zero_or_out_of_range_means_65535(limit: int) -> None:
    assert _list(limit=limit) == ([1, 2, 3, 4, 5, 6], 6, 0)


def test_anchor_outside_the_filter_positions_the_page_but_is_not_counted() -> None:
    waiting = RequestFilter(states=frozenset({"WAITING"}))
    assert _list(waiting, anchor=3) == ([4, 6], 3, 0)  # forward from the running #3
    assert _list(waiting, anchor=3, backward=True) == ([2], 3, 0)


def test_anchor_inside_the_filter_is_counted_but_not_listed() -> None:
    waiting = RequestFilter(states=frozenset({"WAITING"}))
    assert _list(waiting, anchor=4) == ([6], 3, 0)


def test_anchor_follows_the_sort_order() -> None:
    assert _list(sort="priority", descending=True, anchor=6, limit=2) == ([3, 1], 6, 2)
    assert _list(sort="priority", anchor=1, backward=True, limit=1) == ([5], 6, 1)


def test_empty_list_has_no_items_and_zero_figures() -> None:
    nothing = RequestFilter(ids=frozenset({99}))
    spec: ListSpec[Request, RequestID] = ListSpec(nothing, request_sort_key(""), backward=True)
    assert page(REQUESTS, REQS, spec) == Page([], 0, 0)


def test_anchor_alone_outside_the_filter_gives_an_empty_page_and_zero_total() -> None:
    nothing = RequestFilter(ids=frozenset({99}))
    assert _list(nothing, anchor=3) == ([], 0, 0)
    assert _list(nothing, anchor=3, backward=True) == ([], 0, 0)


@pytest.mark.parametrize(
    ("listing", "objects", "anchor", "message"),
    [
        (REQUESTS, REQS, RequestID(99), "request not found"),
        (WORKERS, _workers(), uuid(99), "worker not found"),
    ],
    ids=["request", "worker"],
)
def test_unknown_anchor_is_not_found(listing: Any, objects: Any, anchor: Any, message: str) -> None:
    with pytest.raises(NotFound) as caught:
        page(listing, objects, ListSpec(_everything, lambda o: 0, anchor=anchor, limit=10))
    assert (caught.value.status, caught.value.message) == (404, message)


def test_worker_pages_use_the_uuid_as_anchor() -> None:
    spec = ListSpec(_everything, worker_sort_key("uuid"), anchor=uuid(2), limit=1)
    got = page(WORKERS, _workers(), spec)
    assert ([w.uuid for w in got.items], got.total, got.remaining) == ([uuid(3)], 4, 1)


@pytest.mark.parametrize(
    ("item", "name"),
    [("", "id"), ("ID", "id"), ("priority", "priority"), ("validafter", "validafter")],
)
def test_each_sort_item_is_known_by_its_name(item: str, name: str) -> None:
    assert listing.request_sort_name(listing.request_sort_key(item)) == name


def test_another_sort_key_has_no_name() -> None:
    assert listing.request_sort_name(lambda r: r.owner) is None
