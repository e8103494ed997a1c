from slurmcast.core.ratelimit import TokenBucket


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
