"""A real server on an event loop of its own thread, for synchronous test drivers.

Hypothesis runs examples synchronously: the server it talks to cannot share
their thread's loop, so it runs on its own, and the test speaks to it over
real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from slurmcast.app import SlurmcastApp

from support.server import server_settings


class ServerThread:
    def __init__(self, prefix: str, **settings: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.data_dir = tempfile.TemporaryDirectory(prefix=prefix)
        self.app = SlurmcastApp(server_settings(data_dir=self.data_dir.name, **settings))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.app.start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        self.data_dir.cleanup()


S = TypeVar("S", bound=ServerThread)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """Start ``server``'s thread, wait until it serves, stop it afterwards."""
    server.thread.start()
    assert server.ready.wait(30)
    try:
        yield server
    finally:
        server.stop()


class Tracebacks(logging.Handler):
    """Every record the server logs at ERROR, or with a traceback at ``level`` or
    above (any thread)."""

    def __init__(self, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or (record.exc_info and record.exc_info[0]):
            self.records.append(record)


@contextmanager
def collect_tracebacks(level: int = logging.DEBUG) -> Iterator[Tracebacks]:
    """Collect them from the root logger while the block runs."""
    handler = Tracebacks(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
