"""Properties of what spares the CRM (cti/desk/crm_guard.py), as plain
values: the cache never holds more than its size nor answers past an
expiry or with an old value; a breaker facing a CRM that always fails
lets through a bounded number of requests however many pops ask."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from cti.desk.crm_guard import Breaker, BreakerState, TtlCache

KEYS = st.sampled_from("abcdef")


@given(size=st.integers(1, 4),
       steps=st.lists(st.tuples(st.sampled_from(["put", "get"]), KEYS,
                                st.floats(0, 5), st.one_of(st.just(0.0), st.floats(0.001, 10))),
                      max_size=60))
def test_the_cache_is_bounded_and_never_answers_stale_or_expired(
        size: int, steps: list[tuple[str, str, float, float]]) -> None:
    cache: TtlCache[str, int] = TtlCache(size)
    now = 0.0
    latest: dict[str, tuple[int, float]] = {}  # key -> (last value put, its expiry)
    for serial, (action, key, dt, ttl) in enumerate(steps):
        now += dt
        if action == "put":
            cache.put(key, serial, now, ttl)
            latest[key] = (serial, now + ttl)
            if ttl > 0:
                assert cache.get(key, now) == serial
        else:
            got = cache.get(key, now)
            if got is not None:
                value, expires_at = latest[key]
                assert got == value and now < expires_at
        assert len(cache) <= size


@given(failures=st.integers(1, 6), pause=st.floats(0.5, 30),
       gaps=st.lists(st.floats(0, 5), min_size=1, max_size=200))
def test_a_crm_that_always_fails_gets_a_bounded_number_of_requests(
        failures: int, pause: float, gaps: list[float]) -> None:
    breaker = Breaker(failures, pause)
    now = 0.0
    asked = 0
    for gap in gaps:
        now += gap
        if breaker.allow(now):
            asked += 1
            breaker.failed(now)  # each request fails before the next pop asks
    # The first run of failures, then at most one trial per pause.
    assert asked <= failures + math.floor(now / pause) + 1
    if asked >= failures:
        assert breaker.state is BreakerState.OPEN


def test_one_success_closes_the_breaker_and_the_count_starts_again() -> None:
    breaker = Breaker(2, 10)
    breaker.failed(0)
    breaker.succeeded()
    breaker.failed(1)
    assert breaker.state is BreakerState.CLOSED  # not two failures in a row
    breaker.failed(2)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(11.9)
    assert breaker.allow(12) and breaker.state is BreakerState.TRIAL
    assert not breaker.allow(12)  # one trial at a time
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED and breaker.allow(12)
