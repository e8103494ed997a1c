from slurmcast.core.ratelimit import Pacer, TokenBucket


def test_burst_then_steady_rate() -> None:
    bucket = TokenBucket(rate=1.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 1.0
    assert bucket.take(0.5) == 0.5
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.0) > 0


def test_refill_never_exceeds_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    bucket.take(0.0)
    assert [bucket.take(100.0) for _ in range(3)][-1] > 0


def test_clock_going_backwards_does_not_refill() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0


def test_charging_after_the_fact_goes_into_debt_down_to_minus_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=4)
    assert bucket.take(0.0) == 0.0  # 3 left
    bucket.charge(5.0, 0.0)  # an answer that weighed 5 more
    assert bucket.tokens == -2.0
    assert bucket.take(0.0) == 3.0, "three seconds until a whole token again"
    bucket.charge(100.0, 0.0)
    assert bucket.tokens == -4.0, "one answer cannot silence a client for longer than that"
    assert bucket.take(5.0) == 0.0


def test_a_pacer_lets_a_burst_through_then_spaces_the_rest_in_order() -> None:
    pacer = Pacer(rate=1.0, burst=3)
    assert [pacer.reserve(10.0) for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    # Slots reserved are kept: a newcomer waits behind them.
    assert pacer.reserve(10.5) == 2.5
    assert not pacer.idle_since(12.0)
    assert pacer.idle_since(16.0)


def test_a_pacer_idle_for_long_starts_with_a_full_burst_again() -> None:
    pacer = Pacer(rate=0.5, burst=2)
    assert [pacer.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 2.0]
    assert [pacer.reserve(100.0) for _ in range(3)] == [0.0, 0.0, 2.0]
