"""``Recent``: the latest items, never more than twice the limit."""

from __future__ import annotations

from hypothesis import given, strategies as st

from hardware.recent import Recent


@given(st.integers(1, 20), st.lists(st.integers(), max_size=300))
def test_it_keeps_the_newest_items_in_order_and_stays_bounded(limit: int, items: list[int]) -> None:
    recent: Recent[int] = Recent(limit)
    for item in items:
        recent.append(item)
        assert len(recent) <= 2 * limit
    assert list(recent) == items[-len(recent) :] if recent else items == []
    assert len(recent) >= min(len(items), limit)
