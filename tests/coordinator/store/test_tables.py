"""Instants as microseconds since the epoch: exact both ways, and naive ones refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given, strategies as st

from coordinator.store.tables import EPOCH, from_micros, to_micros

_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=5, minutes=45))]
)


class _NoOffset(tzinfo):
    """A time zone that does not know its offset: such a datetime is naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


@given(
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1), timezones=_ZONES)
)
def test_an_aware_instant_comes_back_exactly(value: datetime) -> None:
    micros = to_micros(value)
    assert micros == (value - EPOCH) // timedelta(microseconds=1)
    assert from_micros(micros) == value


@given(st.datetimes())
def test_a_naive_datetime_is_refused(value: datetime) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        to_micros(value)
    with pytest.raises(ValueError, match="naive datetime"):
        to_micros(value.replace(tzinfo=_NoOffset()))
