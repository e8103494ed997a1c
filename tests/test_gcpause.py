import gc

from slurmcast.gcpause import gc_paused, paused


def test_overlapping_pauses_restore_the_collector_only_at_the_end() -> None:
    # Jobs and nodes parse in two worker threads; their pauses interleave.
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_paused_function_runs_without_the_collector() -> None:
    assert paused(gc.isenabled)() is False
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
