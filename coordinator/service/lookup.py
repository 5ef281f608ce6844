"""Requests wherever they are: in memory (the live ones and the newest finished ones), or
only in the store (docs/architecture.md §requests in memory)."""

from __future__ import annotations

from dataclasses import replace

import anyio

from coordinator.domain import listing
from coordinator.domain.ids import RequestID
from coordinator.domain.listing import ListSpec, Page, RequestFilter
from coordinator.domain.model import Request
from coordinator.domain.states import FINAL_REQUEST_STATES
from coordinator.errors import NotFound
from coordinator.service.farm import Farm
from coordinator.store import RequestQuery, Store, Window

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
    order = listing.request_sort_name(spec.sort_key)
    if order is not None and isinstance(spec.match, RequestFilter) and query.short:
        for _ in range(3):
            finishes = farm.finishes
            done = await _window_page(farm, store, spec, query, order)
            if farm.finishes == finishes:
                return done
            # A live request of the copy finished during the read and may be counted
            # twice; rare, as a window is read in milliseconds: read again.
    held = dict(farm.requests)
    stored = await anyio.to_thread.run_sync(store.finished_requests, query)
    merged = {r.id: r for r in stored if r.id not in held}
    merged.update(held)
    return listing.page(listing.REQUESTS, merged, spec)


async def _window_page(
    farm: Farm, store: Store, spec: ListSpec[Request, RequestID], query: RequestQuery, order: str
) -> Page[Request]:
    """The page from memory and one window of the stored finished requests: the pure
    listing over memory, the window and the anchor gives the page's requests, and the
    store's counts of what it left out complete the totals."""
    held = dict(farm.requests)
    anchor = None if spec.anchor is None else held.get(spec.anchor)
    if query.anchor is not None:
        anchor = await anyio.to_thread.run_sync(store.request, RequestID(query.anchor))
    if spec.anchor is not None and anchor is None:
        return listing.page(listing.REQUESTS, held, spec)  # NotFound, as for any list
    limit = spec.limit if 0 < spec.limit <= listing.MAX_PAGE_LIMIT else listing.MAX_PAGE_LIMIT
    window = Window(order, spec.descending, anchor, spec.backward, limit)
    stored = await anyio.to_thread.run_sync(
        store.finished_window, replace(query, anchor=None), window
    )
    some = {r.id: r for r in stored.rows}
    if anchor is not None:
        some[anchor.id] = anchor
    some.update(held)
    part = listing.page(listing.REQUESTS, some, spec)
    left_out = stored.total - len(stored.rows)
    past = stored.beyond - len(stored.rows)  # past the page on its side, not read
    return Page(part.items, part.total + left_out, part.remaining + past)


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
