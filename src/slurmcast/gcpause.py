"""Pausing the cyclic garbage collector around bulk work on a worker thread."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of a bulk parse.

    Decoding ``squeue --json`` for 100k jobs allocates millions of
    containers; each allocation threshold crossed triggers a collection that
    walks the whole growing heap, which made ``orjson.loads`` 4-5x slower
    (measured: 3.9 s vs 0.9 s on 340 MB), and freeing the decoded document
    with the collector running cost another 0.4 s. Nothing parsed here forms
    cycles, so pausing is safe. Parses run in worker threads and may overlap
    (jobs and nodes), so pauses are counted: the collector's previous state
    is restored when the last one ends, never while another parse runs.
    """
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = False


def paused(function: Callable[P, R]) -> Callable[P, R]:
    """``function`` run with the collector paused (for ``asyncio.to_thread``).

    A full collection triggered by a worker thread's allocations holds the
    GIL for tens of milliseconds over a heap of 100k job records, stalling
    the event loop (measured: 48 ms max stall with, 10 ms without).
    """

    @wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with gc_paused():
            return function(*args, **kwargs)

    return run
