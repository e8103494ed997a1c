from slurmcast.core.backoff import retry_delay


def test_backoff_doubles_and_caps() -> None:
    assert retry_delay(5, 0, 60) == 5
    assert retry_delay(5, 1, 60) == 10
    assert retry_delay(5, 2, 60) == 20
    assert retry_delay(5, 4, 60) == 60
    assert retry_delay(5, 1000, 60) == 60


def test_backoff_never_shorter_than_interval() -> None:
    assert retry_delay(120, 3, 60) == 120
