"""Filter, sort and paginate lists of requests and workers (docs/boruta-api.md §listing)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar

from coordinator.domain.ids import RequestID, WorkerUUID
from coordinator.domain.model import Request, Worker
from coordinator.errors import NotFound, WrongListDirection, WrongSortItem, WrongSortOrder

MAX_PAGE_LIMIT: Final = 65535  # uint16, boruta:lists.go

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def parse_descending(order: str) -> bool:
    """``""``/``ascending`` → False, ``descending`` → True, case-insensitively."""
    word = order.lower()
    if word in ("", "ascending"):
        return False
    if word == "descending":
        return True
    raise WrongSortOrder


def parse_backward(direction: str) -> bool:
    """``""``/``forward`` → False, ``backward`` → True, case-insensitively."""
    word = direction.lower()
    if word in ("", "forward"):
        return False
    if word == "backward":
        return True
    raise WrongListDirection


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Any listed value matches within a field; non-empty fields combine with AND."""

    ids: frozenset[int] = frozenset()
    priorities: frozenset[int] = frozenset()
    states: frozenset[str] = frozenset()  # trimmed and upper-cased by the caller

    def __call__(self, req: Request) -> bool:
        return (
            (not self.ids or req.id in self.ids)
            and (not self.priorities or req.priority in self.priorities)
            and (not self.states or req.state.value in self.states)
        )

    def select(self, reqs: Iterable[Request]) -> list[Request]:
        """The matching requests: ``__call__`` over many, without a call per request."""
        chosen = list(reqs)
        if self.ids:
            chosen = [r for r in chosen if r.id in self.ids]
        if self.priorities:
            chosen = [r for r in chosen if r.priority in self.priorities]
        if self.states:
            chosen = [r for r in chosen if r.state.value in self.states]
        return chosen


@dataclass(frozen=True, slots=True)
class WorkerFilter:
    """Any of the groups; every capability with an exactly equal value."""

    groups: frozenset[str] = frozenset()
    caps: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, worker: Worker) -> bool:
        if self.groups and not self.groups.intersection(worker.groups):
            return False
        return all(worker.caps.get(key) == value for key, value in self.caps.items())

    def select(self, workers: Iterable[Worker]) -> list[Worker]:
        """The matching workers (``__call__`` over many)."""
        if not self.groups and not self.caps:
            return list(workers)
        return [w for w in workers if self(w)]


# attrgetter, not lambdas: a sort calls the key once per object, and C is cheaper there.
_REQUEST_KEYS: Final[dict[str, Callable[[Request], Any]]] = {
    "": attrgetter("id"),
    "id": attrgetter("id"),
    "priority": attrgetter("priority", "id"),
    "deadline": attrgetter("deadline", "id"),
    "validafter": attrgetter("valid_after", "id"),
    "state": attrgetter("state.value", "id"),
}

_WORKER_KEYS: Final[dict[str, Callable[[Worker], Any]]] = {
    "": attrgetter("uuid"),
    "uuid": attrgetter("uuid"),
    "state": attrgetter("state.value", "uuid"),
    # Sorted group lists compare element by element, then by length (boruta:workers/sorter.go).
    "groups": attrgetter("groups", "uuid"),
}


def request_sort_key(item: str) -> Callable[[Request], Any]:
    try:
        return _REQUEST_KEYS[item.lower()]
    except KeyError:
        raise WrongSortItem from None


def request_sort_name(key: Callable[[Request], Any]) -> str | None:
    """Which sort item ``key`` is (``id`` for the default), or ``None`` for another key: a
    store that sorts by the same columns can then read one page of a long listing."""
    for name, ours in _REQUEST_KEYS.items():
        if key is ours:
            return name or "id"
    return None


def worker_sort_key(item: str) -> Callable[[Worker], Any]:
    try:
        return _WORKER_KEYS[item.lower()]
    except KeyError:
        raise WrongSortItem from None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page and the original's ListInfo figures."""

    items: list[T]
    total: int
    remaining: int


@dataclass(frozen=True, slots=True)
class Listing(Generic[T, K]):
    """How to list one kind of object: its ID, and the name of its NotFound."""

    ident: Callable[[T], K]
    what: str  # "request" / "worker": the lower-case NotFound of an unknown paginator ID


# Annotated rather than built as ``Listing[...](...)``: calling a subscripted generic sets
# ``__orig_class__``, which a frozen slots dataclass refuses with a TypeError on Python 3.11.
REQUESTS: Final[Listing[Request, RequestID]] = Listing(lambda r: r.id, "request")
WORKERS: Final[Listing[Worker, WorkerUUID]] = Listing(lambda w: w.uuid, "worker")


@dataclass(frozen=True, slots=True)
class ListSpec(Generic[T, K]):
    """A parsed list body: filter, sorter and paginator."""

    match: Callable[[T], bool]
    sort_key: Callable[[T], Any]
    descending: bool = False
    anchor: K | None = None  # the paginator ID; None = from the start (or the end, backward)
    backward: bool = False
    limit: int = MAX_PAGE_LIMIT


def page(listing: Listing[T, K], objects: Mapping[K, T], spec: ListSpec[T, K]) -> Page[T]:
    """The original's ListRequests/ListWorkers algorithm, step for step.

    The anchor (paginator ID) stays in the sorted list for positioning even when the filter
    rejects it; it is then not counted in the total.
    """
    match, anchor, limit = spec.match, spec.anchor, spec.limit
    if anchor is not None and anchor not in objects:
        raise NotFound(listing.what)
    if not 0 < limit <= MAX_PAGE_LIMIT:
        limit = MAX_PAGE_LIMIT
    ours: Any = match if isinstance(match, RequestFilter | WorkerFilter) else None
    if ours is not None and (anchor is None or ours(objects[anchor])):
        chosen: list[T] = ours.select(objects.values())  # the same result, faster
    else:
        chosen = [o for o in objects.values() if match(o) or listing.ident(o) == anchor]
    chosen.sort(key=spec.sort_key, reverse=spec.descending)
    total = len(chosen)
    if total == 0:
        return Page([], 0, 0)
    index = 0
    if anchor is not None:
        index = next(i for i, o in enumerate(chosen) if listing.ident(o) == anchor)
    if not spec.backward:
        index += 1 if anchor is not None else 0
        count = min(limit, total - index)
        remaining = total - index - count
    else:
        index = total if anchor is None else index
        count = min(limit, index)
        remaining = index - count
        index -= count
    if anchor is not None and not match(objects[anchor]):
        total -= 1
    return Page(chosen[index : index + count], total, remaining)
