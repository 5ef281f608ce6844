"""Requests wherever they are: in memory (the live ones and the newest finished ones), or
only in the store (docs/architecture.md §requests in memory)."""

from __future__ import annotations

import anyio

from coordinator.domain import listing
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, Page, RequestFilter
from coordinator.domain.model import Request
from coordinator.domain.states import FINAL_REQUEST_STATES
from coordinator.errors import NotFound
from coordinator.service.farm import Farm
from coordinator.store import RequestQuery, Store

_FINAL_WORDS = frozenset(s.value for s in FINAL_REQUEST_STATES)


async def find(farm: Farm, store: Store, rid: RequestID) -> Request:
    """The request, from memory or else from the store; ``NotFound`` if there is none.

    A request missing from memory with an ID already given out finished and was let go,
    and a finished request never changes, so the stored one is the answer.
    """
    held = farm.requests.get(rid)
    if held is not None:
        return held
    if farm.left_out and 0 < rid < farm.next_id:
        stored = await anyio.to_thread.run_sync(store.request, rid)
        if stored is not None and stored.state in FINAL_REQUEST_STATES:
            return stored
    raise NotFound("Request")


async def page(farm: Farm, store: Store, spec: ListSpec[Request, RequestID]) -> Page[Request]:
    """The listing over every request: the ones in memory, and the finished ones that only
    the store holds when the filter or the paginator may need them.

    The requests in memory are copied before the store is read: memory never runs ahead
    of the store, so the stored finished requests absent from that copy had been let go
    before it, and the whole is the farm as it was at the copy.
    """
    query = _query(farm, spec)
    if query is None:
        return listing.page(listing.REQUESTS, farm.requests, spec)
    held = dict(farm.requests)
    stored = await anyio.to_thread.run_sync(store.finished_requests, query)
    merged = {r.id: r for r in stored if r.id not in held}
    merged.update(held)
    return listing.page(listing.REQUESTS, merged, spec)


def _query(farm: Farm, spec: ListSpec[Request, RequestID]) -> RequestQuery | None:
    """What to read from the store for ``spec``; ``None`` when memory has it all."""
    if not farm.left_out:
        return None
    floor, anchor = farm.floor, spec.anchor
    if anchor is not None and (anchor in farm.requests or not 0 < anchor < farm.next_id):
        anchor = None  # in memory, or unknown anywhere
    match = spec.match
    if not isinstance(match, RequestFilter):
        return RequestQuery(floor, anchor=anchor)  # any finished request may match
    if match.states and not match.states & _FINAL_WORDS:
        return None if anchor is None else RequestQuery(floor, states=frozenset(), anchor=anchor)
    if match.ids and all(i in farm.requests or not 0 < i < floor for i in match.ids):
        return None if anchor is None else RequestQuery(floor, states=frozenset(), anchor=anchor)
    states = frozenset(s for s in FINAL_REQUEST_STATES if not match.states or s in match.states)
    return RequestQuery(floor, match.ids, match.priorities, states, anchor)
